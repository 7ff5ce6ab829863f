"""B5: install and delete of one package of 10, 100, 1,000 and 10,000 entities (a chain: each secret's bindings
read the previous secret's id), each in a fresh zone of one `zonecat serve` (SQLite): seconds from the request to
the task's end as the database records it, and how the time grows from 1,000 to 10,000 entities.

Every size is measured five times (each in a fresh zone) and its median is the figure: a 1,000-entity delete takes
~0.15 s, which one scheduling hiccup of this shared machine moves by a third, and that figure is the denominator of
the growth ratio; measured once, a 10,000-entity delete took 1.9 s in one full run and 3.0 s in the next on the same
code, which alone moved the ratio from 7.6x to 12.0x, and with three samples of it one full run still gave 12.04x
where the samples of the same code ranged 7.3-12.9x. The sizes are measured in rounds (10, 100, 1,000, 10,000,
1,000 again, then the next round), so that both sizes of the ratio see the same phases of the machine; the
denominator, the cheapest and noisiest figure of the ratio, gets ten samples. Every sample is in the JSON."""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

from bench import api
from bench.report import Check, Outcome, at_most, info
from bench.servers import ZonecatServer

MAX_1K_INSTALL_S = 2.0
MAX_GROWTH = 12.0  # t(10k) ≤ 12 x t(1k): linear, with 20 % slack
REPEATS = 5  # rounds; every size below the largest once a round, the one just below it twice
LARGEST_REPEATS = 5  # of the largest (seconds each)


def _short(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 else str(size)


def _install_and_delete(server: ZonecatServer, http: httpx.Client, size: int) -> tuple[float, float]:
    """Seconds to install, then to delete, one package of ``size`` entities in a fresh zone."""
    zone_id = api.create_zone(http)
    package_id = api.compact_chain_package(http, zone_id, size)
    # Completion is seen in the database (every 5 ms), then confirmed once through the API: polling the task through
    # the API would render its links (~2 MB at 10,000 entities) on every poll, which loaded the server more the
    # larger the package and bent the growth being measured.
    started = time.perf_counter()
    task_id, install_id = api.install(http, zone_id, package_id, {})
    server.wait_zone(zone_id, expected=1, interval=0.005)
    installed = time.perf_counter() - started
    api.wait(http, zone_id, task_id)
    started = time.perf_counter()
    delete_id = api.delete(http, zone_id, install_id)
    server.wait_zone(zone_id, expected=2, interval=0.005)
    deleted = time.perf_counter() - started
    api.wait(http, zone_id, delete_id)
    return installed, deleted


def run(quick: bool) -> Outcome:
    sizes = [10, 100, 1000] if quick else [10, 100, 1000, 10_000]
    figures: dict[str, Any] = {}
    with ZonecatServer() as server, server.client(timeout=600) as http:
        warmup_zone = api.create_zone(http)  # the first task after start-up waits for the worker's first poll
        api.wait(
            http, warmup_zone, api.install(http, warmup_zone, api.compact_chain_package(http, warmup_zone, 1), {})[0]
        )
        # Rounds of every size, smallest first, rather than every sample of one size and then the next: a slower
        # phase of this shared machine (tens of seconds) then lands on samples of both sizes of the ratio, not on
        # all of one of them (a 10,000-entity delete's three samples in a row once made the ratio 12.9x where the
        # interleaved samples of the same code gave 9.5-10.0x).
        # The ratio's denominator (the size below the largest) is also measured right after the largest, in every
        # round: ten samples of it, each round's two on both sides of its largest sample in time.
        measured: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
        for round_number in range(REPEATS):
            for size in [*sizes, sizes[-2]]:
                if size != sizes[-1] or round_number < LARGEST_REPEATS:
                    measured[size].append(_install_and_delete(server, http, size))
        for size, samples in measured.items():
            installs, deletes = [sample[0] for sample in samples], [sample[1] for sample in samples]
            figures[str(size)] = {
                "install_s": round(statistics.median(installs), 3),
                "delete_s": round(statistics.median(deletes), 3),
                "install_samples_s": [round(value, 3) for value in installs],
                "delete_samples_s": [round(value, 3) for value in deletes],
            }
    checks: list[Check] = []
    for size in sizes:
        label = f"{size:,} entities (median of {len(measured[size])})"
        install_s, delete_s = figures[str(size)]["install_s"], figures[str(size)]["delete_s"]
        if size == 1000:
            checks.append(at_most(f"install {label}", install_s, "s", MAX_1K_INSTALL_S, f"≤ {MAX_1K_INSTALL_S:g} s"))
        else:
            checks.append(info(f"install {label}", install_s, "s"))
        checks.append(info(f"delete {label}", delete_s, "s"))
    big, small = (10_000, 1000) if not quick else (1000, 100)
    note = "" if not quick else "quick: 10,000 skipped, ratio of 1,000 to 100"
    for step in ("install", "delete"):
        ratio = figures[str(big)][f"{step}_s"] / figures[str(small)][f"{step}_s"]
        figures[f"{step}_ratio_{big}_to_{small}"] = round(ratio, 2)
        name = f"{step} t({_short(big)}) / t({_short(small)})"
        checks.append(at_most(name, ratio, "x", MAX_GROWTH, f"≤ {MAX_GROWTH:g}x (linear)", note))
    return Outcome(figures, checks)
