"""B3: sustained installs of a 3-entity package from 8 concurrent clients (wrk connections, each POSTing one
install at a time) on `zonecat serve` (SQLite, one process): completed installs/s, timed from the first POST until
every task is completed."""

from __future__ import annotations

import time
from typing import Any

from bench import api
from bench.cpu import CpuSplit
from bench.report import Outcome, at_least
from bench.servers import ZonecatServer
from bench.wrk import post_installs

MIN_RATE = 300
CLIENTS = 8


def throughput(
    server: ZonecatServer, installs: int, clients: int = CLIENTS, cpu: CpuSplit | None = None
) -> dict[str, Any]:
    """Completed installs/s; with ``cpu``, also the CPU seconds of its components over the same window."""
    with server.client() as http:
        zone_id = api.create_zone(http)
        package_id = api.chain_package(http, zone_id, 3)
        # The first task after start-up waits for the worker's first poll (~1 s); keep that out of the figure.
        api.wait(http, zone_id, api.install(http, zone_id, package_id, {"run": "b3-warmup"})[0])

    if cpu is not None:
        cpu.start()
    started = time.perf_counter()
    # The installs go out from wrk (C) rather than from Python clients, whose CPU (~3 ms an install with httpx,
    # measured) would be taken from the server on this machine's two cores.
    post_installs(server.url, zone_id, package_id, installs, clients, "b3")
    server.wait_zone(zone_id, expected=installs + 1)  # and the warm-up's
    elapsed = time.perf_counter() - started
    figures: dict[str, Any] = {
        "installs": installs,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "installs_per_s": round(installs / elapsed, 1),
    }
    if cpu is not None:
        figures["cpu_seconds"] = cpu.stop()
    return figures


def run(quick: bool) -> Outcome:
    installs = 100 if quick else 1000
    with ZonecatServer() as server:
        figures = throughput(server, installs)
    rate = figures["installs_per_s"]
    return Outcome(
        figures,
        [at_least("sustained installs, SQLite", rate, "/s", MIN_RATE, f"≥ {MIN_RATE}/s", f"{installs} installs")],
    )
