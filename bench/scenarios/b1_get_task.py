"""B1: `GET /zones/{zone}/catalog_tasks/{id}?redirect=false` (a completed task, 200) on one uvicorn process, under
wrk, next to a bare FastAPI endpoint that returns the same bytes (bench/ceiling.py): the framework's ceiling."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import api
from bench.report import Outcome, at_least, info
from bench.servers import REPO, ZonecatServer, free_port, stop, tree_cpu_seconds, wait_healthy
from bench.wrk import WrkResult, ensure_wrk, run_wrk

THREADS = 2
CONNECTIONS = 32
MIN_RPS = 4000
MIN_RATIO = 0.45


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load(url: str, pid: int, seconds: int) -> tuple[WrkResult, float, float]:
    """wrk against ``url``: its result, the server's CPU use and wrk's own (in % of one core)."""
    server_before, wrk_before, started = tree_cpu_seconds(pid), _children_cpu(), time.monotonic()
    result = run_wrk(url, seconds, THREADS, CONNECTIONS)
    elapsed = time.monotonic() - started
    server_cpu = (tree_cpu_seconds(pid) - server_before) / elapsed * 100
    wrk_cpu = (_children_cpu() - wrk_before) / elapsed * 100
    if result.errors:
        raise RuntimeError(f"wrk saw {result.errors} errors or non-2xx responses on {url}")
    return result, server_cpu, wrk_cpu


def run(quick: bool) -> Outcome:
    ensure_wrk()
    seconds = 3 if quick else 10
    warmup = 1 if quick else 2
    figures: dict[str, Any] = {"wrk": f"-t{THREADS} -c{CONNECTIONS} -d{seconds}s", "cores": None}
    with ZonecatServer() as server, tempfile.TemporaryDirectory(prefix="zonecat-bench-b1-") as scratch:
        with server.client() as http:
            zone_id = api.create_zone(http)
            package_id = api.chain_package(http, zone_id, 3)
            task_id, _ = api.install(http, zone_id, package_id, {"run": "b1"})
            api.wait(http, zone_id, task_id)
            path = f"/zones/{zone_id}/catalog_tasks/{task_id}?redirect=false"
            response = http.get(path)
            response.raise_for_status()
        body = response.content
        body_file = Path(scratch) / "body.json"
        body_file.write_bytes(body)
        port = free_port()
        log = Path(scratch) / "ceiling.log"
        with log.open("wb") as out:
            ceiling = subprocess.Popen(
                [sys.executable, "-m", "bench.ceiling", "--port", str(port), "--body-file", str(body_file)],
                cwd=REPO,
                stdout=out,
                stderr=out,
            )
        try:
            ceiling_url = f"http://127.0.0.1:{port}"
            wait_healthy(ceiling_url + "/healthz", ceiling, "the ceiling app", log)
            with server.client() as http:
                same = http.get(ceiling_url + path).content == body
            if not same:
                raise RuntimeError("the ceiling app does not return zonecat's bytes")
            targets = {
                "zonecat": (server.url + path, server.pid),
                "ceiling": (ceiling_url + path, ceiling.pid),
                # zonecat's async /healthz touches no database: its middleware and routing alone.
                "zonecat_healthz": (server.url + "/healthz", server.pid),
            }
            for url, pid in targets.values():
                _load(url, pid, warmup)
            runs = {name: _load(url, pid, seconds) for name, (url, pid) in targets.items()}
        finally:
            stop([ceiling])
    figures["cores"] = os.cpu_count()
    figures["body_bytes"] = len(body)
    for name, (result, server_cpu, wrk_cpu) in runs.items():
        figures[name] = {
            "requests_per_s": round(result.requests_per_s, 1),
            "requests": result.requests,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "server_cpu_pct_of_one_core": round(server_cpu, 1),
            "wrk_cpu_pct_of_one_core": round(wrk_cpu, 1),
        }
    zonecat, ceiling_rps = runs["zonecat"][0].requests_per_s, runs["ceiling"][0].requests_per_s
    ratio = zonecat / ceiling_rps
    figures["ratio_to_ceiling"] = round(ratio, 3)
    return Outcome(
        figures,
        [
            at_least("GET task, zonecat", zonecat, "req/s", MIN_RPS, f"≥ {MIN_RPS:,} req/s"),
            info("GET task, bare FastAPI ceiling", ceiling_rps, "req/s"),
            at_least("zonecat / ceiling", ratio, "x", MIN_RATIO, f"≥ {MIN_RATIO}"),
            info("GET task, zonecat p99 latency", runs["zonecat"][0].p99_ms, "ms", f"{CONNECTIONS} connections"),
            info("GET /healthz, zonecat", runs["zonecat_healthz"][0].requests_per_s, "req/s", "no database, async"),
        ],
        [
            f"wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s on the same {figures['cores']}-core machine: "
            f"zonecat's process used {runs['zonecat'][1]:.0f} % of a core and wrk {runs['zonecat'][2]:.0f} %; "
            f"the ceiling app {runs['ceiling'][1]:.0f} % and wrk {runs['ceiling'][2]:.0f} %",
        ],
    )
