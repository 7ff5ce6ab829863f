"""Concurrency campaign: many installs at once of packages whose entities overlap by natural key, mixed with deletes
of finished installs and with unmanaged entities created and deleted through the typed collections (providers,
secrets) under the very identifiers the packages use, all against one `zonecat serve` process.

Expected answers are all fine (an adoption, a 409 because the catalog made the entity first, a 409 because an
install uses it, a 409 for deleting an install still being created); a 5xx never is. Afterwards:

* every task is terminal and `zonecat check` finds nothing;
* every entity a delete task preserved (task link ``rel: preserved``) is named in that DELETE's 202 warnings
  (``details[].field == "entities.<local name>"``);
* conversely, a warned entity that the delete then removed is acceptable only when the other user named by the
  warning was itself deleted meanwhile (README: "when two users of a shared entity are deleted together, the last
  delete removes it"); such cases are counted, not reported as violations;
* uninstalling everything and deleting every unmanaged entity leaves the zone empty.

Seeded: `python -m tests.campaigns.concurrency --seed 1234` replays the same packages and the same requests (their
interleaving depends on timing).
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server
from tests.paging import all_items

QUIET = {"ZONECAT_LOG_LEVEL": "WARNING", "ZONECAT_POLL_SECONDS": "0.1"}
POOL = {"provider": 4, "secret": 6, "resource": 3}  # shared identifiers per type
COLLECTIONS = {"provider": "providers", "secret": "secrets", "resource": "resources"}
STILL_USED = re.compile(r"still used by install (\S+)")


def shared_identifier(type_name: str, index: int) -> str:
    return f"cc-{type_name}-{index}"


@dataclass
class DeleteRecord:
    install_id: str
    task_id: str
    warnings: list[dict[str, Any]]


@dataclass
class Report:
    seed: int
    backend: str = "sqlite"
    packages: int = 0
    installs: int = 0
    install_conflicts: int = 0
    deletes: int = 0
    delete_conflicts: int = 0
    unmanaged_created: int = 0
    unmanaged_create_conflicts: int = 0
    unmanaged_deleted: int = 0
    unmanaged_delete_conflicts: int = 0
    managed_delete_refused: int = 0
    completed: int = 0
    failed: int = 0
    adopted: int = 0
    shared: int = 0
    preserved: int = 0
    warnings: int = 0
    warned_then_deleted: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    late_shares: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        statuses = " ".join(f"{code}:{count}" for code, count in sorted(self.statuses.items()))
        return (
            f"seed={self.seed} backend={self.backend} packages={self.packages} installs={self.installs} "
            f"(409 {self.install_conflicts}) deletes={self.deletes} (409 {self.delete_conflicts}) "
            f"unmanaged created={self.unmanaged_created} (409 {self.unmanaged_create_conflicts}) "
            f"deleted={self.unmanaged_deleted} (409 {self.unmanaged_delete_conflicts}) "
            f"managed-delete-refused={self.managed_delete_refused} tasks completed={self.completed} "
            f"failed={self.failed} steps adopted={self.adopted} shared={self.shared} preserved={self.preserved} "
            f"warnings={self.warnings} warned-then-deleted={self.warned_then_deleted} "
            f"unwarned-late-shares={len(self.late_shares)} statuses=[{statuses}] "
            f"violations={len(self.violations)} seconds={self.seconds:.1f}"
        )


def package_manifest(rng: random.Random, index: int) -> dict[str, Any]:
    """A provider, maybe a resource whose credential provider it is, and a few secrets; most identifiers come
    from the shared pool (distinct within one package), some are the install's own, and one package in five fails
    at its last entity (so its create rolls back)."""
    entities: dict[str, Any] = {}
    provider = rng.randrange(POOL["provider"])
    entities["idp"] = {
        "type": "provider",
        "bindings": f'{{"identifier": "{shared_identifier("provider", provider)}", "name": "Provider {provider}"}}',
    }
    if rng.random() < 0.6:
        resource = rng.randrange(POOL["resource"])
        entities["api"] = {
            "type": "resource",
            "bindings": (
                f'{{"identifier": "{shared_identifier("resource", resource)}", "name": "Resource {resource}", '
                '"credential_provider_id": entities.idp.outputs.id}'
            ),
            "links": [{"rel": "credential-provider", "href": "#idp"}],
        }
    for secret in rng.sample(range(POOL["secret"]), rng.randint(1, 3)):
        entities[f"s{secret}"] = {
            "type": "secret",
            "bindings": f'{{"identifier": "{shared_identifier("secret", secret)}", "name": "Secret {secret}"}}',
        }
    if rng.random() < 0.5:
        entities["own"] = {
            "type": "secret",
            "bindings": f'{{"identifier": "p{index}-own-" + entities.inputs.run, "name": "own"}}',
        }
    if rng.random() < 0.2:
        entities["broken"] = {
            "type": "secret",
            "bindings": '{"identifier": "never-" + entities.inputs.run, "name": entities.inputs.missing_on_purpose}',
        }
    return {
        "kind": "custom",
        "name": f"Concurrency {index}",
        "inputs": {"schema": {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}},
        "entities": entities,
    }


class Campaign:
    def __init__(
        self,
        seed: int,
        installs: int,
        packages: int,
        data_dir: Path,
        database_url: str | None = None,
        threads: int = 16,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.report = Report(seed, backend="postgresql" if database_url else "sqlite")
        self.install_count = installs
        self.package_count = packages
        self.threads = threads
        self.server = Server(data_dir, env=QUIET, database_url=database_url)
        self.zone = ""
        self.packages: list[str] = []
        self.installs: list[str] = []
        self.deletes: dict[str, DeleteRecord] = {}
        self.lock = threading.Lock()
        self.installs_done = threading.Event()
        self.deleters_done = threading.Event()

    # -- plumbing ------------------------------------------------------------------------------------------

    def http(self) -> httpx.Client:
        return self.server.client()

    def saw(self, response: httpx.Response, expected: tuple[int, ...]) -> int:
        """Count the status; a 5xx or an unexpected status is a violation."""
        code = response.status_code
        with self.lock:
            self.report.statuses[code] = self.report.statuses.get(code, 0) + 1
            if code >= 500 or code not in expected:
                request = response.request
                self.report.violations.append(
                    f"{request.method} {request.url.path} answered {code}: {response.text[:300]}"
                )
        return code

    def pages(self, http: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
        return all_items(http, path, {"limit": "100", **params}, check=lambda response: self.saw(response, (200,)))

    # -- set-up --------------------------------------------------------------------------------------------

    def setup(self) -> None:
        if self.server.database_url:
            self.server.migrate()
        self.server.start()
        self.zone = self.server.new_zone()
        with self.http() as http:
            for index in range(self.package_count):
                manifest = package_manifest(self.rng, index)
                created = http.post(f"/zones/{self.zone}/packages", json={"manifest": manifest})
                created.raise_for_status()
                package_id = created.json()["id"]
                http.post(f"/zones/{self.zone}/packages/{package_id}/versions", json={}).raise_for_status()
                self.packages.append(package_id)
        self.report.packages = len(self.packages)

    # -- the load ------------------------------------------------------------------------------------------

    def install(self, number: int, rng: random.Random) -> None:
        time.sleep(rng.uniform(0, 0.5))
        body = {"package_id": rng.choice(self.packages), "inputs": {"run": f"r{number}"}}
        key = {"Idempotency-Key": f"cc-{self.seed}-install-{number}"}
        with self.http() as http:
            response = http.post(f"/zones/{self.zone}/installs", json=body, headers=key)
        if self.saw(response, (202,)) == 202:
            with self.lock:
                self.installs.append(response.json()["install_id"])
                self.report.installs += 1

    def deleter(self, rng: random.Random) -> None:
        """Delete random installs once they have finished (a 409 while one is still being created is fine), until
        the target number of deletes is reached (or a time bound: the loop never runs away)."""
        target = self.install_count * 2 // 5
        deadline = time.monotonic() + 120
        with self.http() as http:
            while time.monotonic() < deadline:
                with self.lock:
                    if self.installs_done.is_set() and len(self.deletes) >= target:
                        return
                    deleted = {record.install_id for record in self.deletes.values()}
                    fresh = [i for i in self.installs if i not in deleted]
                    candidates = fresh if fresh and rng.random() < 0.9 else list(self.installs)
                if not candidates:
                    time.sleep(0.05)
                    continue
                install_id = rng.choice(candidates)
                status = http.get(f"/zones/{self.zone}/installs/{install_id}")
                self.saw(status, (200,))
                if status.json()["status"] != "pending" or rng.random() < 0.2:
                    self.delete_install(http, install_id)
                time.sleep(rng.uniform(0.01, 0.1))

    def delete_install(self, http: httpx.Client, install_id: str) -> None:
        response = http.delete(f"/zones/{self.zone}/installs/{install_id}")
        code = self.saw(response, (202, 409))
        with self.lock:
            if code == 409:
                self.report.delete_conflicts += 1
                return
            task = response.json()
            if task["id"] not in self.deletes:
                self.deletes[task["id"]] = DeleteRecord(install_id, task["id"], list(task.get("warnings") or []))
                self.report.deletes += 1

    def churner(self, rng: random.Random) -> None:
        """Create and delete unmanaged providers and secrets under the packages' identifiers; now and then try to
        delete a catalog-made one (always refused while an install uses it)."""
        mine: list[str] = []
        with self.http() as http:
            while not self.deleters_done.is_set():
                roll = rng.random()
                if roll < 0.5:
                    type_name = rng.choice(["provider", "secret"])
                    identifier = shared_identifier(type_name, rng.randrange(POOL[type_name]))
                    body = {"identifier": identifier, "name": f"unmanaged {identifier}"}
                    response = http.post(f"/zones/{self.zone}/{COLLECTIONS[type_name]}", json=body)
                    code = self.saw(response, (201, 409))
                    with self.lock:
                        if code == 201:
                            mine.append(f"/zones/{self.zone}/{COLLECTIONS[type_name]}/{response.json()['id']}")
                            self.report.unmanaged_created += 1
                        elif code == 409:
                            self.report.unmanaged_create_conflicts += 1
                elif roll < 0.85 and mine:
                    href = mine.pop(rng.randrange(len(mine)))
                    code = self.saw(http.delete(href), (204, 409))
                    with self.lock:
                        if code == 204:
                            self.report.unmanaged_deleted += 1
                        elif code == 409:
                            self.report.unmanaged_delete_conflicts += 1
                            mine.append(href)  # in use: try again later
                else:
                    type_name = rng.choice(["provider", "secret"])
                    listed = http.get(f"/zones/{self.zone}/entities", params={"type": type_name, "limit": "50"})
                    self.saw(listed, (200,))
                    managed = [e for e in listed.json()["items"] if e["managed"]]
                    if managed:
                        target = rng.choice(managed)
                        # 409 while used; 404 if its last user removed it meanwhile. A 204 would mean a managed
                        # entity that no install used: an orphan.
                        if self.saw(http.delete(target["href"]), (409, 404)) == 409:
                            with self.lock:
                                self.report.managed_delete_refused += 1
                time.sleep(rng.uniform(0.01, 0.1))

    def load(self) -> None:
        seeds = [self.rng.randrange(2**32) for _ in range(self.install_count + 6)]
        with ThreadPoolExecutor(max_workers=self.threads + 6) as pool:
            deleters = [pool.submit(self.deleter, random.Random(seeds[-1 - n])) for n in range(3)]
            churners = [pool.submit(self.churner, random.Random(seeds[-4 - n])) for n in range(3)]
            installs = [pool.submit(self.install, n, random.Random(seeds[n])) for n in range(self.install_count)]
            try:
                for future in installs:
                    future.result()
                self.installs_done.set()
                for future in deleters:
                    future.result()
            finally:
                self.installs_done.set()
                self.deleters_done.set()
            for future in churners:
                future.result()

    # -- afterwards ----------------------------------------------------------------------------------------

    def drain(self, http: httpx.Client, timeout: float = 300.0) -> list[dict[str, Any]]:
        """Wait until no task is pending or running; return every task."""
        deadline = time.monotonic() + timeout
        tasks = f"/zones/{self.zone}/catalog_tasks"
        while self.pages(http, tasks, status="pending") or self.pages(http, tasks, status="running"):
            if time.monotonic() > deadline:
                raise AssertionError("tasks still unfinished after the campaign")
            time.sleep(0.1)
        every = self.pages(http, tasks)
        unfinished = [t["id"] for t in every if t["status"] not in ("completed", "failed")]
        if unfinished:
            self.report.violations.append(f"tasks not terminal: {unfinished}")
        return every

    def events(self, http: httpx.Client, task_id: str) -> list[dict[str, Any]]:
        response = http.get(f"/zones/{self.zone}/catalog_tasks/{task_id}/events", params={"limit": "1000"})
        self.saw(response, (200,))
        return list(response.json()["items"])

    def check_warnings(self, http: httpx.Client, every: list[dict[str, Any]]) -> None:
        """Each preserved entity was warned about; each warned entity that was deleted lost its other user."""
        by_id = {task["id"]: task for task in every}
        installs = {i["id"]: i for i in self.pages(http, f"/zones/{self.zone}/installs")}
        for record in self.deletes.values():
            task = by_id[record.task_id]
            if task["status"] != "completed":
                self.report.violations.append(f"delete task {task['id']} of {record.install_id} {task['status']}")
                continue
            warned: dict[str, str] = {}
            # The 202's warnings (planned at DELETE time) and those the task added when an install took an entity
            # after the DELETE was answered: together they must name every preserved entity.
            for warning in [*record.warnings, *(task.get("warnings") or [])]:
                for detail in warning.get("details", []):
                    warned[detail["field"]] = warning["message"]
            self.report.warnings += len(warned)
            outcome = {link["properties"]["local_name"]: link for link in task["links"]}
            for name, link in outcome.items():
                if link["rel"] == "preserved":
                    self.report.preserved += 1
                    if f"entities.{name}" not in warned:
                        self.explain_unwarned(http, record, task, name, link)
            for field_name, message in warned.items():
                name = field_name.removeprefix("entities.")
                link = outcome.get(name)
                if link is None:
                    self.report.violations.append(f"delete {task['id']}: warning names unknown {field_name}")
                elif link["rel"] == "deleted":
                    other = STILL_USED.search(message)
                    other_status = installs.get(other.group(1), {}).get("status") if other else None
                    if other_status in ("deleted", "deleting"):
                        self.report.warned_then_deleted += 1  # documented: both users were deleted
                    else:
                        self.report.violations.append(
                            f"delete {task['id']} of {record.install_id}: warned '{message}' but deleted "
                            f"{link['href']}; the other user is {other_status}"
                        )

    def explain_unwarned(
        self, http: httpx.Client, record: DeleteRecord, task: dict[str, Any], name: str, link: dict[str, Any]
    ) -> None:
        """A preserved entity without a warning: a known gap when the install that kept it took it only after the
        DELETE was planned (its create was still queued then), a violation otherwise."""
        steps = [e for e in self.events(http, task["id"]) if e["local_name"] == name and e["action"]]
        kept = steps[-1]["message"] if steps else ""
        users = STILL_USED.search(kept or "")
        taken_at, since = "", ""
        if users:
            creates = self.pages(
                http, f"/zones/{self.zone}/catalog_tasks", install_id=users.group(1), operation="create"
            )
            entity_id = link["href"].rsplit("/", 1)[-1]
            for create in creates:
                steps = [e for e in self.events(http, create["id"]) if e["entity_id"] == entity_id and e["action"]]
                if steps:
                    taken_at = steps[0]["created_at"]
                    since = (
                        f"; {users.group(1)} took it at {taken_at} ({steps[0]['action']}), its create task "
                        f"{create['id']} made at {create['created_at']}"
                    )
        line = (
            f"delete {task['id']} of {record.install_id} (requested {task['created_at']}) preserved "
            f"'{name}' {link['href']} without a warning: {kept}{since}"
        )
        self.report.violations.append(line)

    def tally_steps(self, http: httpx.Client, every: list[dict[str, Any]]) -> None:
        for task in every:
            if task["operation"] == "create":
                self.report.adopted += sum(link["rel"] == "adopted" for link in task["links"])
                self.report.shared += sum(link["rel"] == "shared" for link in task["links"])
        self.report.completed = sum(t["status"] == "completed" for t in every)
        self.report.failed = sum(t["status"] == "failed" for t in every)

    def empty_the_zone(self, http: httpx.Client) -> None:
        for install in self.pages(http, f"/zones/{self.zone}/installs"):
            if install["status"] in ("active", "failed"):
                self.saw(http.delete(f"/zones/{self.zone}/installs/{install['id']}"), (202,))
        self.drain(http)
        for entity in self.pages(http, f"/zones/{self.zone}/entities"):
            if entity["managed"]:
                self.report.violations.append(f"managed {entity['type']} {entity['identifier']} left after uninstall")
            else:
                self.saw(http.delete(entity["href"]), (204,))
        left = self.pages(http, f"/zones/{self.zone}/entities")
        if left:
            self.report.violations.append(f"zone not empty at the end: {[e['identifier'] for e in left]}")

    def zonecat_check(self) -> None:
        zonecat = str(Path(sys.executable).with_name("zonecat"))
        result = subprocess.run([zonecat, "check"], env=self.server.env(), capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            lines = [line for line in result.stdout.splitlines() if line.strip()] or [result.stderr]
            self.report.violations += [f"zonecat check: {line}" for line in lines]

    def run(self) -> Report:
        started = time.monotonic()
        self.setup()
        self.load()
        with self.http() as http:
            every = self.drain(http)
            self.tally_steps(http, every)
            self.check_warnings(http, every)
        self.zonecat_check()
        with self.http() as http:
            self.empty_the_zone(http)
        self.zonecat_check()
        self.server.stop()
        self.report.seconds = time.monotonic() - started
        return self.report


def run_campaign(
    seed: int,
    installs: int = 50,
    packages: int = 8,
    data_dir: Path | None = None,
    database_url: str | None = None,
) -> Report:
    directory = data_dir or Path(tempfile.mkdtemp(prefix="zonecat-concurrency-"))
    campaign = Campaign(seed, installs, packages, directory, database_url)
    try:
        return campaign.run()
    finally:
        campaign.server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="replay this seed (default: a random one, printed)")
    parser.add_argument("--installs", type=int, default=50)
    parser.add_argument("--packages", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database (migrated here)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**9)
    print(f"concurrency campaign: seed {seed}, {args.installs} installs", flush=True)
    report = run_campaign(seed, args.installs, args.packages, database_url=args.database_url)
    print(report.summary())
    if report.late_shares:
        print("preserved without a warning because another install took the entity after the DELETE was planned:")
        for line in report.late_shares:
            print("  " + line)
    if report.violations:
        print("violations:")
    for violation in report.violations:
        print("  " + violation)
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
