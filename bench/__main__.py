"""Benchmarks that start their own `zonecat serve` and print one table.

Scenarios (ids follow the benchmark issue):
  B2  one install of a 3-entity package, POST to completed (polled with ?redirect=false): p50 / p99
  B3  sustained installs of a 3-entity package from concurrent clients: completed installs/s
  B4  sustained installs on PostgreSQL with 1, 2 and 4 worker processes (API separate): completed installs/s
  B5  install and delete of packages of 10, 100 and 1,000 entities: seconds

Results go to bench/results/latest.json with the machine and versions. Absolute times on a shared machine are
noisy; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

TOKEN = "zc_bench_token"
RESULTS = Path(__file__).with_name("results")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ZONECAT = str(Path(sys.executable).with_name("zonecat"))


class Server:
    """A `zonecat serve` (SQLite by default) or, with `database_url`, `serve --no-worker` plus `workers` processes."""

    def __init__(self, database_url: str | None = None, workers: int = 0) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="zonecat-bench-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update(
            {
                "ZONECAT_DATA_DIR": str(self.data_dir),
                "ZONECAT_BOOTSTRAP_TOKEN": TOKEN,
                "ZONECAT_PORT": str(self.port),
                "ZONECAT_RATE_LIMIT": "0",
                "ZONECAT_LOG_LEVEL": "WARNING",
            }
        )
        quiet = subprocess.DEVNULL
        self.workers: list[subprocess.Popen[bytes]] = []
        if database_url:
            env["ZONECAT_DATABASE_URL"] = database_url  # API and workers share the data dir, hence the secret key
            subprocess.run([ZONECAT, "migrate"], env=env, check=True, stdout=quiet, stderr=quiet)
            self.process = subprocess.Popen([ZONECAT, "serve", "--no-worker"], env=env, stdout=quiet, stderr=quiet)
            self.workers = [
                subprocess.Popen([ZONECAT, "worker"], env=env, stdout=quiet, stderr=quiet) for _ in range(workers)
            ]
        else:
            self.process = subprocess.Popen([ZONECAT, "serve"], env=env, stdout=quiet, stderr=quiet)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("zonecat serve did not start")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)

    def close(self) -> None:
        for process in [self.process, *self.workers]:
            process.send_signal(signal.SIGTERM)
        for process in [self.process, *self.workers]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _zone(http: httpx.Client) -> str:
    response = http.post("/zones", json={"name": f"bench-{uuid.uuid4().hex[:10]}"})
    response.raise_for_status()
    return str(response.json()["id"])


def _chain_package(http: httpx.Client, zone_id: str, count: int) -> str:
    """A zone package of `count` secrets, each depending on the previous one."""
    entities: dict[str, Any] = {}
    for index in range(count):
        previous = f', "metadata": {{"after": entities.e{index - 1}.outputs.id}}' if index else ""
        entities[f"e{index}"] = {
            "type": "secret",
            "bindings": f'{{"identifier": "bench-{index}-" + entities.inputs.run, "name": "secret {index}"{previous}}}',
        }
    manifest = {
        "kind": "custom",
        "name": f"bench chain {count} {uuid.uuid4().hex[:6]}",
        "inputs": {"schema": {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}},
        "entities": entities,
    }
    created = http.post(f"/zones/{zone_id}/packages", json={"manifest": manifest})
    created.raise_for_status()
    package_id = created.json()["id"]
    http.post(f"/zones/{zone_id}/packages/{package_id}/versions", json={}).raise_for_status()
    return str(package_id)


def _wait(http: httpx.Client, zone_id: str, task_id: str, interval: float = 0.001) -> dict[str, Any]:
    while True:
        body = http.get(f"/zones/{zone_id}/catalog_tasks/{task_id}", params={"redirect": "false"}).json()
        if body["status"] in ("completed", "failed"):
            if body["status"] == "failed":
                raise RuntimeError(body.get("error_message"))
            return dict(body)
        time.sleep(interval)


def _install(http: httpx.Client, zone_id: str, package_id: str, inputs: dict[str, Any]) -> tuple[str, str]:
    response = http.post(f"/zones/{zone_id}/installs", json={"package_id": package_id, "inputs": inputs})
    response.raise_for_status()
    body = response.json()
    return str(body["id"]), str(body["install_id"])


def b2_latency(server: Server, runs: int) -> dict[str, Any]:
    with server.client() as http:
        zone_id = _zone(http)
        package_id = _chain_package(http, zone_id, 3)
        samples = []
        for index in range(runs):
            started = time.perf_counter()
            task_id, _ = _install(http, zone_id, package_id, {"run": f"b2-{index}"})
            _wait(http, zone_id, task_id)
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "runs": runs,
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
    }


def b3_throughput(server: Server, installs: int, clients: int) -> dict[str, Any]:
    with server.client() as http:
        zone_id = _zone(http)
        package_id = _chain_package(http, zone_id, 3)

    def submit(index: int) -> str:
        with server.client() as http:
            task_id, _ = _install(http, zone_id, package_id, {"run": f"b3-{index}"})
            return task_id

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        task_ids = list(pool.map(submit, range(installs)))
    with server.client() as http:
        for task_id in task_ids:
            _wait(http, zone_id, task_id, interval=0.01)
    elapsed = time.perf_counter() - started
    return {
        "installs": installs,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "installs_per_s": round(installs / elapsed, 1),
    }


def b4_postgres_workers(installs: int, counts: list[int]) -> dict[str, Any]:
    """Installs/s on PostgreSQL with 1, 2, 4 worker processes, and on SQLite (one process) in the same run."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.pg import PostgresServer

    figures: dict[str, Any] = {}
    sqlite = Server()
    try:
        figures["sqlite_1_process"] = b3_throughput(sqlite, installs, 8)["installs_per_s"]
    finally:
        sqlite.close()
    postgres = PostgresServer()
    postgres.start()
    try:
        for count in counts:
            database = postgres.create_database()
            server = Server(postgres.url(database), workers=count)
            try:
                figures[f"postgresql_{count}_workers"] = b3_throughput(server, installs, 8)["installs_per_s"]
            finally:
                server.close()
    finally:
        postgres.stop()
    return figures


def b5_sizes(server: Server, sizes: list[int]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with server.client() as http:
        for size in sizes:
            zone_id = _zone(http)
            package_id = _chain_package(http, zone_id, size)
            started = time.perf_counter()
            task_id, install_id = _install(http, zone_id, package_id, {"run": "b5"})
            _wait(http, zone_id, task_id, interval=0.005)
            installed = time.perf_counter() - started
            started = time.perf_counter()
            response = http.delete(f"/zones/{zone_id}/installs/{install_id}")
            response.raise_for_status()
            _wait(http, zone_id, response.json()["id"], interval=0.005)
            deleted = time.perf_counter() - started
            figures[str(size)] = {"install_s": round(installed, 3), "delete_s": round(deleted, 3)}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", default=["B2", "B3", "B4", "B5"])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test of the benchmarks)")
    args = parser.parse_args()
    wanted = {s.upper() for s in args.scenarios}
    server = Server()
    results: dict[str, Any] = {}
    try:
        if "B2" in wanted:
            results["B2"] = b2_latency(server, 20 if args.quick else 200)
        if "B3" in wanted:
            results["B3"] = b3_throughput(server, 100 if args.quick else 1000, 8)
        if "B4" in wanted:
            results["B4"] = b4_postgres_workers(100 if args.quick else 600, [1, 2, 4])
        if "B5" in wanted:
            results["B5"] = b5_sizes(server, [10, 100] if args.quick else [10, 100, 1000])
    finally:
        server.close()
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": {
            "zonecat": _version("zonecat"),
            "fastapi": _version("fastapi"),
            "sqlalchemy": _version("sqlalchemy"),
        },
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'scenario':10} figures")
    for scenario, figures in results.items():
        print(f"{scenario:10} {json.dumps(figures)}")


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
