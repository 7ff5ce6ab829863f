"""Crash campaign: installs and deletes of packages of 1 to 300 entities against a `zonecat serve` process that
is killed with SIGKILL at random moments and restarted each time. Afterwards every task must be terminal and
`zonecat check` must find nothing; uninstalling everything must leave no managed entity.

Seeded: `python -m tests.campaigns.crash --seed 1234 --kills 200` replays a run exactly (up to timing).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server
from tests.paging import all_items

FAST_LEASES = {"ZONECAT_LEASE_SECONDS": "1", "ZONECAT_HEARTBEAT_SECONDS": "0.25", "ZONECAT_LOG_LEVEL": "WARNING"}


@dataclass
class Report:
    seed: int
    kills: int = 0
    installs: int = 0
    deletes: int = 0
    completed: int = 0
    failed: int = 0
    resumed: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"seed={self.seed} kills={self.kills} installs={self.installs} deletes={self.deletes} "
            f"tasks completed={self.completed} failed={self.failed} resumed={self.resumed} "
            f"violations={len(self.violations)} seconds={self.seconds:.1f}"
        )


def package_manifest(rng: random.Random, index: int) -> dict[str, Any]:
    """A chain of secrets; some identifiers are drawn from a small shared pool (so installs share entities),
    and some packages fail at a random entity (so creates roll back)."""
    size = rng.choice([1, 2, 3, 5, 10, 30, 100, 300])
    fail_at = rng.randrange(size) if rng.random() < 0.2 else None
    entities: dict[str, Any] = {}
    for position in range(size):
        if rng.random() < 0.3:
            identifier = f'"shared-{rng.randrange(20)}"'
        else:
            identifier = f'"p{index}-e{position}-" + entities.inputs.run'
        name = f'"entity {position}"'
        if position == fail_at:
            name = "entities.inputs.missing_on_purpose"
        after = f', "metadata": {{"after": entities.e{position - 1}.outputs.id}}' if position else ""
        entities[f"e{position}"] = {
            "type": "secret",
            "bindings": f'{{"identifier": {identifier}, "name": {name}{after}}}',
        }
    return {
        "kind": "custom",
        "name": f"Campaign {index}",
        "inputs": {"schema": {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}},
        "entities": entities,
    }


class Campaign:
    def __init__(self, seed: int, kills: int, packages: int, data_dir: Path) -> None:
        self.rng = random.Random(seed)
        self.report = Report(seed)
        self.kills = kills
        self.server = Server(data_dir, env=FAST_LEASES)
        self.package_count = packages
        self.zone = ""
        self.packages: list[str] = []
        self.installs: list[str] = []

    def http(self) -> httpx.Client:
        return self.server.client()

    def setup(self) -> None:
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

    def act(self, http: httpx.Client) -> None:
        """One random request: an install (2 in 3) or the delete of a random install."""
        key = {"Idempotency-Key": f"campaign-{self.report.seed}-{self.report.installs + self.report.deletes}"}
        if self.installs and self.rng.random() < 1 / 3:
            install_id = self.rng.choice(self.installs)
            response = http.delete(f"/zones/{self.zone}/installs/{install_id}", headers=key)
            if response.status_code == 202:
                self.report.deletes += 1
            return
        package_id = self.rng.choice(self.packages)
        body = {"package_id": package_id, "inputs": {"run": f"r{self.rng.randrange(10**6)}"}}
        response = http.post(f"/zones/{self.zone}/installs", json=body, headers=key)
        response.raise_for_status()
        self.installs.append(response.json()["install_id"])
        self.report.installs += 1

    def run(self) -> Report:
        started = time.monotonic()
        self.setup()
        for _ in range(self.kills):
            with self.http() as http:
                for _ in range(self.rng.randint(1, 4)):
                    self.act(http)
            time.sleep(self.rng.uniform(0.02, 0.25))  # the kill lands somewhere in the work, or between tasks
            self.server.kill()
            self.report.kills += 1
            self.server.start()
        self.drain()
        self.uninstall_everything()
        self.report.violations = self.check()
        self.server.stop()
        self.report.seconds = time.monotonic() - started
        return self.report

    def tasks(self, http: httpx.Client, **filters: str) -> list[dict[str, Any]]:
        return all_items(http, f"/zones/{self.zone}/catalog_tasks", {"limit": "100", **filters})

    def drain(self, timeout: float = 600.0) -> None:
        """Wait until no task is pending or running."""
        deadline = time.monotonic() + timeout
        with self.http() as http:
            while self.tasks(http, status="pending") or self.tasks(http, status="running"):
                if time.monotonic() > deadline:
                    raise AssertionError("tasks still unfinished after the campaign")
                time.sleep(0.2)
            every = self.tasks(http)
            self.report.completed = sum(t["status"] == "completed" for t in every)
            self.report.failed = sum(t["status"] == "failed" for t in every)
            for task in every:
                events = http.get(f"/zones/{self.zone}/catalog_tasks/{task['id']}/events").json()["items"]
                self.report.resumed += sum("resumed" in (e["message"] or "") for e in events)

    def uninstall_everything(self) -> None:
        with self.http() as http:
            for install_id in set(self.installs):
                status = http.get(f"/zones/{self.zone}/installs/{install_id}").json()["status"]
                if status in ("active", "failed"):
                    http.delete(f"/zones/{self.zone}/installs/{install_id}").raise_for_status()
        self.drain()
        with self.http() as http:
            leftovers = http.get(f"/zones/{self.zone}/entities", params={"limit": "100"}).json()["items"]
            managed = [e for e in leftovers if e["managed"]]
            if managed:
                self.report.violations.append(f"{len(managed)} managed entities left after uninstalling everything")

    def check(self) -> list[str]:
        zonecat = str(Path(sys.executable).with_name("zonecat"))
        result = subprocess.run([zonecat, "check"], env=self.server.env(), capture_output=True, text=True, timeout=300)
        found = list(self.report.violations)
        if result.returncode != 0:
            found += [line for line in result.stdout.splitlines() if line.strip()] or [result.stderr]
        return found


def run_campaign(seed: int, kills: int, packages: int = 12, data_dir: Path | None = None) -> Report:
    directory = data_dir or Path(tempfile.mkdtemp(prefix="zonecat-crash-"))
    campaign = Campaign(seed, kills, packages, directory)
    try:
        return campaign.run()
    finally:
        campaign.server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="replay this seed (default: a random one, printed)")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--packages", type=int, default=12)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**9)
    print(f"crash campaign: seed {seed}, {args.kills} kills", flush=True)
    report = run_campaign(seed, args.kills, args.packages)
    print(report.summary())
    for violation in report.violations:
        print("  " + violation)
    sys.exit(1 if report.violations else 0)


if __name__ == "__main__":
    main()
