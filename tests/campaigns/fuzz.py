"""API fuzzing campaign: schemathesis against the live OpenAPI document (`/openapi.json` of the real app), for every
operation, in positive and negative generation modes.

The app runs in-process on a fresh, migrated and seeded SQLite database with a real worker thread. Before each
operation a "world" is (re)built: a zone with an active install, a completed and a failed task, a released zone
package and one entity of each typed collection. A share of the generated cases get their path parameters replaced
with the ids (or slugs, or version numbers) of those real objects, so the fuzzer reaches the code behind the 404.

Every response must pass: not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance, response_headers_conformance and (negative cases) negative_data_rejection, plus the
contract's own rules: every response carries `X-Request-ID`, every 4xx/5xx body is the error object with matching
`status`. An exception escaping the app counts as a 5xx.

`python -m tests.campaigns.fuzz --max-examples 2000 [--seed N]` (`make fuzz`); `--max-examples` is the total
number of generated cases, spread evenly over the operations and both modes.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from starlette.testclient import TestClient

from tests.api.helpers import CALENDAR, CREDS, simple_manifest
from tests.conftest import TEST_SECRET_BOX, TEST_SECRET_KEY
from zonecat.api.app import create_app
from zonecat.api.context import AppContext, RateLimiter
from zonecat.engine.bootstrap import ORGANIZATION_ID, ensure_admin_token
from zonecat.engine.packages import load_global_catalog
from zonecat.settings import Settings
from zonecat.store.database import Database
from zonecat.worker.worker import Worker

ADMIN_TOKEN = "zc_fuzz_admin_token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Share of cases whose path parameters are replaced with the ids of real objects.
REAL_IDS_PERCENT = 60
ERROR_KEYS = {"code", "message", "status", "path", "request_id", "timestamp", "details"}

CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)


def _checks(negative: bool) -> list[Any]:
    names = list(CHECK_NAMES) + (["negative_data_rejection"] if negative else [])
    return [getattr(schemathesis.checks, name) for name in names]


@dataclass
class Report:
    seed: int
    operations: int = 0
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    real_id_cases: int = 0
    # (operation, title) -> (count, first example)
    failures: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def fail(self, operation: str, title: str, example: str) -> None:
        entry = self.failures.setdefault((operation, title), [0, example])
        entry[0] += 1

    @property
    def failed_cases(self) -> int:
        return sum(count for count, _ in self.failures.values())

    def summary(self) -> str:
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(self.statuses.items()))
        return (
            f"seed={self.seed} operations={self.operations} cases={self.cases} real-id cases={self.real_id_cases} "
            f"5xx={self.server_errors} distinct failures={len(self.failures)} failing checks={self.failed_cases} "
            f"seconds={self.seconds:.1f}\nstatuses: {statuses}"
        )

    def details(self) -> str:
        lines = []
        for (operation, title), (count, example) in sorted(self.failures.items()):
            lines.append(f"--- {operation}: {title} (x{count})\n{example}")
        return "\n".join(lines)


class World:
    """The real app on a fresh SQLite database with a worker thread, and the real objects the fuzzer aims at."""

    def __init__(self, data_dir: Path) -> None:
        settings = Settings(
            data_dir=data_dir,
            secret_key=TEST_SECRET_KEY,
            rate_limit_per_second=0,
            lease_seconds=5,
            heartbeat_seconds=1,
            poll_seconds=0.2,
        )
        self.db = Database(settings.effective_database_url, secret_box=TEST_SECRET_BOX)
        self.db.migrate()
        ensure_admin_token(self.db, ADMIN_TOKEN)
        load_global_catalog(self.db, ORGANIZATION_ID, None)
        self.worker = Worker(self.db, settings, name="fuzz-worker")
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()
        ctx = AppContext(db=self.db, settings=settings, limiter=RateLimiter(0, 1), wake_worker=self.worker.wake)
        self.app = create_app(ctx)
        self.client = TestClient(self.app, base_url="http://testserver", headers=AUTH)
        self.pools: dict[str, list[str]] = {}
        self.zone = ""
        reader = self._ok(self.client.post("/tokens", json={"name": "fuzz-reader", "read_only": True}), 201)
        # Who sends the request (percent of cases): mostly the admin; sometimes nobody, a stranger, a read-only
        # token, or a token limited to the world's zone (set by ``rebuild``).
        self.identities: list[tuple[int, dict[str, str]]] = [
            (3, {}),
            (3, {"Authorization": "Bearer zc_not_a_token"}),
            (6, {"Authorization": f"Bearer {reader['token']}"}),
        ]
        self.zone_identity: dict[str, str] = {}

    def close(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=10)
        self.client.close()
        self.db.dispose()

    def _ok(self, response: Any, *statuses: int) -> Any:
        if response.status_code not in statuses:
            raise AssertionError(f"seeding: {response.request.method} {response.request.url}: {response.text}")
        return response.json() if response.content else None

    def _wait(self, zone: str, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = self._ok(self.client.get(f"/zones/{zone}/catalog_tasks/{task_id}?redirect=false"), 200)
            if body["status"] in ("completed", "failed"):
                return dict(body)
            time.sleep(0.02)
        raise AssertionError(f"seeding: task {task_id} did not finish")

    def rebuild(self) -> None:
        """A fresh zone full of real objects (earlier operations may have deleted or changed the previous one)."""
        tag = uuid.uuid4().hex[:8]
        zone = self._ok(self.client.post("/zones", json={"name": f"fuzz-{tag}"}), 201)["id"]
        self.zone = zone
        installed = self._ok(
            self.client.post(f"/zones/{zone}/installs", json={"package_id": CALENDAR, "inputs": CREDS}), 202
        )
        done = self._wait(zone, installed["id"])
        package = self._ok(
            self.client.post(f"/zones/{zone}/packages", json={"manifest": simple_manifest(f"Fuzz {tag}")}), 201
        )
        version = self._ok(self.client.post(f"/zones/{zone}/packages/{package['id']}/versions", json={}), 201)
        # A failed task: the package's required input is missing.
        bad = self.client.post(f"/zones/{zone}/installs", json={"package_id": package["id"], "inputs": {"app_name": 1}})
        failed = [self._wait(zone, bad.json()["id"])["id"]] if bad.status_code == 202 else []
        installs = self._ok(self.client.get(f"/zones/{zone}/installs"), 200)["items"]
        tasks = self._ok(self.client.get(f"/zones/{zone}/catalog_tasks"), 200)["items"]
        token = self._ok(self.client.post("/tokens", json={"name": f"fuzz-{tag}", "zones": [zone]}), 201)
        self.zone_identity = {"Authorization": f"Bearer {token['token']}"}
        typed: dict[str, list[str]] = {}
        bodies = {
            "providers": {"identifier": f"https://issuer-{tag}.example.com", "name": "P"},
            "resources": {"identifier": f"https://api-{tag}.example.com", "name": "R"},
            "applications": {"identifier": f"https://app-{tag}.example.com", "name": "A"},
            "secrets": {"identifier": f"secret-{tag}", "name": "S", "data": {"type": "token"}},
        }
        for collection, body in bodies.items():
            created = self.client.post(f"/zones/{zone}/{collection}", json=body)
            typed[collection] = [created.json()["id"]] if created.status_code == 201 else []
        everything = self._ok(self.client.get(f"/zones/{zone}/entities?limit=100"), 200)["items"]
        for entity in everything:
            collection = {"application_credential": "application-credentials"}.get(entity["type"], "")
            if collection:
                typed.setdefault(collection, []).append(entity["id"])
        global_package = self._ok(self.client.get(f"/zones/{zone}/packages/{CALENDAR}"), 200)
        self.pools = {
            "zone_id": [zone],
            "install_id": [i["id"] for i in installs] or [done["install_id"]],
            "task_id": [t["id"] for t in tasks] + failed,
            "package_id": [package["id"], package["slug"], CALENDAR, global_package["id"]],
            "version_id": ["1", "2", version["id"], global_package["current_version"]["id"]],
            "token_id": [token["id"]],
            "entity_id": [e["id"] for e in everything],
            **{f"entity_id:{collection}": ids for collection, ids in typed.items()},
        }

    def identity(self, percent: int) -> dict[str, str]:
        """The headers of the identity for a draw in 0..99."""
        for share, headers in [*self.identities, (6, self.zone_identity)]:
            if percent < share:
                return headers
            percent -= share
        return AUTH

    def real_value(self, path: str, name: str, pick: Callable[[list[str]], str]) -> str | None:
        if name == "entity_id":
            match = re.match(r"^/zones/\{zone_id\}/([a-z-]+)/\{entity_id\}", path)
            if match and match.group(1) != "entities":
                pool = self.pools.get(f"entity_id:{match.group(1)}") or self.pools["entity_id"]
                return pick(pool) if pool else None
        pool = self.pools.get(name)
        return pick(pool) if pool else None


def _check_contract(response: Any) -> list[str]:
    """zonecat's own rules on top of the schema: X-Request-ID everywhere, the error object on every 4xx/5xx."""
    problems = []
    headers = {name.lower(): values[0] for name, values in response.headers.items() if values}
    request_id = headers.get("x-request-id")
    if not request_id:
        problems.append("no X-Request-ID header")
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            return [*problems, f"{response.status_code} body is not JSON: {response.text[:200]!r}"]
        if not isinstance(body, dict) or set(body) != ERROR_KEYS:
            problems.append(f"{response.status_code} body is not the error object: {str(body)[:200]}")
        elif body["status"] != response.status_code or body["request_id"] != request_id:
            problems.append(f"error object disagrees with the response: {body}")
        if response.status_code == 409 and headers.get("x-should-retry") != "false":
            problems.append("409 without x-should-retry: false")
    return problems


def _run_operation(
    world: World, operation: Any, mode: GenerationMode, examples: int, seed: int, report: Report
) -> None:
    label = f"{operation.label} [{mode.value}]"
    checks = _checks(mode is GenerationMode.NEGATIVE)
    # Choices hypothesis does not steer: its integers lean hard towards the bounds, these should be plain shares.
    rng = random.Random(seed)

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if case.path_parameters and rng.randrange(100) < REAL_IDS_PERCENT:
            report.real_id_cases += 1
            for name in list(case.path_parameters):
                value = world.real_value(operation.path, name, rng.choice)
                if value is not None:
                    case.path_parameters[name] = value
        report.cases += 1
        headers = world.identity(rng.randrange(100))
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # an exception escaping the app is a 500 the client would see
            report.server_errors += 1
            report.statuses[500] += 1
            report.fail(label, f"exception escaped the app: {type(exc).__name__}", f"{exc!r}\n{case.as_curl_command()}")
            return
        report.statuses[response.status_code] += 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                report.fail(label, failure.title, f"{str(group)[:3000]}")
        except AssertionError as exc:
            report.fail(label, type(exc).__name__, f"{str(exc)[:3000]}\n{case.as_curl_command(headers=headers)}")
        for problem in _check_contract(response):
            report.fail(label, problem.split(":")[0], f"{problem}\n{case.as_curl_command(headers=headers)}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing to negate (an operation without parameters or body)


def _negatable(operation: Any) -> bool:
    return bool(list(operation.query)) or bool(list(operation.body))


def run_campaign(max_examples: int, seed: int, data_dir: Path, log: Callable[[str], None] = print) -> Report:
    """Fuzz every operation of the live OpenAPI document with about ``max_examples`` cases in all."""
    report = Report(seed=seed)
    started = time.monotonic()
    world = World(data_dir)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", world.app)
        operations = [result.ok() for result in schema.get_all_operations()]
        report.operations = len(operations)
        # Plain string path parameters cannot be negated: negative cases only where there is a query or a body.
        runs = [(operation, GenerationMode.POSITIVE) for operation in operations] + [
            (operation, GenerationMode.NEGATIVE) for operation in operations if _negatable(operation)
        ]
        runs.sort(key=lambda run: operations.index(run[0]))
        per_run = max(1, round(max_examples / len(runs)))
        rng = random.Random(seed)
        # Repeat until the total is reached: hypothesis stops early where the input space is small (no parameters).
        while report.cases < max_examples:
            before = report.cases
            for operation, mode in runs:
                if report.cases >= max_examples:
                    break
                if mode is GenerationMode.POSITIVE:
                    world.rebuild()
                count = min(per_run, max_examples - report.cases)
                start = report.cases
                _run_operation(world, operation, mode, count, rng.randrange(2**32), report)
                log(f"{operation.label} [{mode.value}]: {report.cases - start} cases")
            if report.cases == before:
                break
    finally:
        world.close()
        report.seconds = time.monotonic() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=2000, help="total generated cases (default 2000)")
    parser.add_argument("--seed", type=int, default=None, help="replay this seed (default: a random one, printed)")
    parser.add_argument("--quiet", action="store_true", help="no per-operation lines")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"fuzz campaign: seed={seed} max-examples={args.max_examples}", flush=True)
    with tempfile.TemporaryDirectory(prefix="zonecat-fuzz-") as tmp:
        report = run_campaign(
            args.max_examples, seed, Path(tmp), log=(lambda _: None) if args.quiet else lambda m: print(m, flush=True)
        )
    if report.failures:
        print(report.details())
    print(report.summary())
    sys.exit(1 if report.failures or report.server_errors else 0)


if __name__ == "__main__":
    main()
