"""B2: one install of a 3-entity package, from the POST to its task completed (polled every 1 ms with
``?redirect=false``), on `zonecat serve` (SQLite): p50 / p99."""

from __future__ import annotations

import statistics
import time

from bench import api
from bench.report import Outcome, at_most, info
from bench.servers import ZonecatServer

MAX_P50_MS = 15
MAX_P99_MS = 50


def run(quick: bool) -> Outcome:
    runs = 20 if quick else 200
    with ZonecatServer() as server, server.client() as http:
        zone_id = api.create_zone(http)
        package_id = api.chain_package(http, zone_id, 3)
        api.wait(http, zone_id, api.install(http, zone_id, package_id, {"run": "b2-warmup"})[0])
        samples = []
        for index in range(runs):
            started = time.perf_counter()
            task_id, _ = api.install(http, zone_id, package_id, {"run": f"b2-{index}"})
            api.wait(http, zone_id, task_id)
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    figures = {"runs": runs, "p50_ms": round(p50, 2), "p99_ms": round(p99, 2), "max_ms": round(samples[-1], 2)}
    return Outcome(
        figures,
        [
            at_most("install → completed p50", p50, "ms", MAX_P50_MS, f"≤ {MAX_P50_MS} ms"),
            at_most("install → completed p99", p99, "ms", MAX_P99_MS, f"≤ {MAX_P99_MS} ms", f"{runs} runs"),
            info("install → completed max", samples[-1], "ms"),
        ],
    )
