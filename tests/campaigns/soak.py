"""Soak: a mixed load (reads, installs and deletes of the shipped catalog packages, typed entity reads) from a few
threads against one `zonecat serve` process for a fixed time, then a report of requests, errors, request rate and
the server's resident memory (VmRSS) at start, at half time and at the end.

Exits non-zero on any 5xx, any other unexpected status or failed request, a `zonecat check` violation, or when the
RSS grew by more than 20% over the second half (a leak shows there; the first half includes warm-up).

`python -m tests.campaigns.soak --minutes 10` (`make soak`, `MINUTES=n` to change the time).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server

QUIET = {"ZONECAT_LOG_LEVEL": "WARNING"}
REQUEST_TIMEOUT = 15.0
MAX_GROWTH = 0.20
INPUTS = {"client_id": "soak-client", "client_secret": "soak-secret"}


def rss_kib(pid: int) -> int:
    """VmRSS of the process and of its descendants, in KiB (0 once it has gone)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending += [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                pass
    return total


@dataclass
class Report:
    minutes: float
    seed: int
    requests: int = 0
    errors: int = 0
    server_errors: int = 0
    installs: int = 0
    deletes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    rss_start: int = 0
    rss_half: int = 0
    rss_end: int = 0
    seconds: float = 0.0
    check_violations: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float:
        return (self.rss_end - self.rss_half) / self.rss_half if self.rss_half else 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.server_errors and not self.check_violations and self.growth <= MAX_GROWTH

    def summary(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        kinds = " ".join(f"{k}:{v}" for k, v in sorted(self.by_kind.items()))
        return (
            f"soak: seed={self.seed} minutes={self.minutes:g} seconds={self.seconds:.1f} requests={self.requests} "
            f"({rate:.1f}/s) errors={self.errors} 5xx={self.server_errors} installs={self.installs} "
            f"deletes={self.deletes} [{kinds}]\n"
            f"rss KiB: start={self.rss_start} half={self.rss_half} end={self.rss_end} "
            f"(second half {self.growth * 100:+.1f}%, limit +{MAX_GROWTH * 100:.0f}%) "
            f"check={len(self.check_violations)} violations"
        )


class Soak:
    def __init__(self, minutes: float, threads: int, seed: int, data_dir: Path) -> None:
        self.report = Report(minutes, seed)
        self.threads = threads
        self.seed = seed
        self.server = Server(data_dir, env=QUIET)
        self.lock = threading.Lock()
        self.zone = ""
        self.packages: list[str] = []
        self.installs: list[str] = []
        self.tasks: list[str] = []
        self.entities: list[str] = []
        self.deadline = 0.0

    def count(self, kind: str, response: httpx.Response | None, expected: tuple[int, ...]) -> int:
        with self.lock:
            self.report.requests += 1
            self.report.by_kind[kind] = self.report.by_kind.get(kind, 0) + 1
            if response is None:
                self.report.errors += 1
                return 0
            code = response.status_code
            if code >= 500:
                self.report.server_errors += 1
            if code not in expected:
                self.report.errors += 1
                if len(self.report.samples) < 20:
                    self.report.samples.append(f"{kind}: {response.request.url.path} {code} {response.text[:200]}")
            return code

    def call(self, http: httpx.Client, kind: str, method: str, path: str, expected: tuple[int, ...], **kw: Any) -> Any:
        try:
            response = http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            with self.lock:
                if len(self.report.samples) < 20:
                    self.report.samples.append(f"{kind}: {path} {type(exc).__name__}: {exc}")
            self.count(kind, None, expected)
            return None
        code = self.count(kind, response, expected)
        return response.json() if code in (200, 201, 202) and code in expected else None

    def worker(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        z = f"/zones/{self.zone}"
        with self.server.client() as http:
            http.timeout = httpx.Timeout(REQUEST_TIMEOUT)
            sequence = 0
            while time.monotonic() < self.deadline:
                sequence += 1
                roll = rng.random()
                with self.lock:
                    installs, tasks, entities = list(self.installs), list(self.tasks[-50:]), list(self.entities[-50:])
                if roll < 0.15:
                    body = {"package_id": rng.choice(self.packages), "inputs": INPUTS}
                    key = {"Idempotency-Key": f"soak-{self.seed}-{number}-{sequence}"}
                    task = self.call(http, "install", "POST", f"{z}/installs", (202,), json=body, headers=key)
                    if task:
                        with self.lock:
                            self.installs.append(task["install_id"])
                            self.tasks.append(task["id"])
                            self.report.installs += 1
                elif roll < 0.30 and installs:
                    install_id = rng.choice(installs)
                    # 409 while its create task is still running; otherwise the (maybe existing) delete task.
                    task = self.call(http, "delete", "DELETE", f"{z}/installs/{install_id}", (202, 409))
                    if task:
                        with self.lock:
                            if install_id in self.installs:
                                self.installs.remove(install_id)
                                self.report.deletes += 1
                            self.tasks.append(task["id"])
                elif roll < 0.40:
                    self.call(http, "packages", "GET", f"{z}/packages", (200,))
                elif roll < 0.45:
                    package = rng.choice(self.packages)
                    self.call(http, "package", "GET", f"{z}/packages/{package}/versions", (200,))
                elif roll < 0.55:
                    self.call(http, "installs", "GET", f"{z}/installs", (200,), params={"limit": "50"})
                elif roll < 0.65:
                    self.call(http, "tasks", "GET", f"{z}/catalog_tasks", (200,))
                elif roll < 0.75 and tasks:
                    task_id = rng.choice(tasks)
                    self.call(http, "task", "GET", f"{z}/catalog_tasks/{task_id}", (200,), params={"redirect": "false"})
                    if rng.random() < 0.3:
                        self.call(http, "events", "GET", f"{z}/catalog_tasks/{task_id}/events", (200,))
                elif roll < 0.85:
                    collection = rng.choice(["providers", "resources"])
                    listed = self.call(http, "typed-list", "GET", f"{z}/{collection}", (200,))
                    if listed:
                        with self.lock:
                            self.entities += [f"{z}/{collection}/{item['id']}" for item in listed["items"]]
                            del self.entities[:-200]
                elif roll < 0.95 and entities:
                    # 404 when its last install was deleted meanwhile.
                    self.call(http, "typed-get", "GET", rng.choice(entities), (200, 404))
                else:
                    self.call(http, "entities", "GET", f"{z}/entities", (200,), params={"limit": "50"})

    def run(self) -> Report:
        self.server.start()
        assert self.server.process is not None
        pid = self.server.process.pid
        self.zone = self.server.new_zone()
        with self.server.client() as http:
            listed = http.get(f"/zones/{self.zone}/packages", params={"limit": "100"})
            listed.raise_for_status()
            self.packages = [p["id"] for p in listed.json()["items"]]
        if not self.packages:
            raise RuntimeError("the shipped catalog has no packages")
        seconds = self.report.minutes * 60
        started = time.monotonic()
        self.deadline = started + seconds
        self.report.rss_start = rss_kib(pid)
        threads = [threading.Thread(target=self.worker, args=(n,), daemon=True) for n in range(self.threads)]
        for thread in threads:
            thread.start()
        time.sleep(seconds / 2)
        self.report.rss_half = rss_kib(pid)
        for thread in threads:
            thread.join(timeout=max(0.0, self.deadline - time.monotonic()) + 2 * REQUEST_TIMEOUT)
        self.report.seconds = time.monotonic() - started
        self.report.rss_end = rss_kib(pid)
        self.check()
        self.server.stop()
        return self.report

    def check(self) -> None:
        """Let the queue drain (bounded), then `zonecat check`."""
        drain_until = time.monotonic() + 60
        with self.server.client() as http:
            while time.monotonic() < drain_until:
                open_tasks = [
                    http.get(f"/zones/{self.zone}/catalog_tasks", params={"status": s}).json()["items"]
                    for s in ("pending", "running")
                ]
                if not any(open_tasks):
                    break
                time.sleep(0.2)
        zonecat = str(Path(sys.executable).with_name("zonecat"))
        result = subprocess.run([zonecat, "check"], env=self.server.env(), capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            self.report.check_violations = [x for x in result.stdout.splitlines() if x.strip()] or [result.stderr]


def run_soak(minutes: float, threads: int = 4, seed: int = 0, data_dir: Path | None = None) -> Report:
    directory = data_dir or Path(tempfile.mkdtemp(prefix="zonecat-soak-"))
    soak = Soak(minutes, threads, seed, directory)
    try:
        return soak.run()
    finally:
        soak.server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**9)
    print(f"soak: seed {seed}, {args.minutes:g} minutes, {args.threads} threads", flush=True)
    report = run_soak(args.minutes, args.threads, seed)
    print(report.summary())
    for line in report.samples + report.check_violations:
        print("  " + line)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
