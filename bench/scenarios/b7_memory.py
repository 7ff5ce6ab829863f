"""B7: the memory of `zonecat serve` over 10,000 installs and deletes (quick: 1,000) of a one-secret package from 8
client threads through the HTTP API (SQLite). VmRSS of /proc/<pid>/status is read at the start (after one warm-up
install and delete), when half of the cycles are done, at the end, and every half second for the peak: of the serve
process (the API) and of its child processes (the worker process `serve` starts, when it starts one). The targets
are held by the serve process alone and by the whole service, in two measures. The sum of the processes' RSS
counts every page both map in each of them: the shared libraries' pages, and the modules' memory the worker
process shares with the API process it was forked from (copy-on-write). The sum of their PSS (read with the RSS,
from /proc/<pid>/smaps_rollup) counts each page once, split among the processes sharing it: that is the memory the
service takes on the machine, and what a container's memory limit (its cgroup) counts.

The same cycles are then run against `zonecat serve --in-process-worker`, the one-process shape of the design
(§7: the API and one worker in one process): its tasks run in threads of the API process, which then shares its
GIL with them (the default runs them in a process of their own for that reason; see README). Its RSS is judged
against the same targets, as a row of its own."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import api
from bench.report import Outcome, at_most, info
from bench.servers import ZonecatServer, descendants, pss_mb, rss_mb

CLIENTS = 8
MAX_RSS_MB = 150.0
MAX_GROWTH_PCT = 5.0  # "no growth": allocator noise only


def _rss(pid: int) -> tuple[float, float]:
    """(the serve process's RSS, the sum of its descendants' RSS) in MB."""
    return rss_mb(pid), _descendants_sum(pid, rss_mb)


def _pss_total(pid: int) -> float:
    """The PSS of the serve process and its descendants, summed, in MB."""
    return pss_mb(pid) + _descendants_sum(pid, pss_mb)


def _descendants_sum(pid: int, read: Callable[[int], float]) -> float:
    """``read`` (MB) summed over the live descendants of ``pid``."""
    total = 0.0
    for child in descendants(pid):
        try:
            total += read(child)
        except (OSError, RuntimeError):  # gone meanwhile, or a zombie without the figure
            pass
    return total


def _cycles(serve_args: tuple[str, ...], cycles: int) -> dict[str, Any]:
    """Run ``cycles`` install + delete cycles against one `zonecat serve` with ``serve_args``; the readings."""
    samples: list[tuple[float, float, float]] = []
    pss_samples: list[float] = []
    marks: dict[str, tuple[float, float]] = {}
    pss: dict[str, float] = {}
    with ZonecatServer(serve_args=serve_args) as server:
        with server.client() as http:
            zone_id = api.create_zone(http)
            package_id = api.chain_package(http, zone_id, 1)
            task_id, install_id = api.install(http, zone_id, package_id, {"run": "b7-warmup"})
            api.wait(http, zone_id, task_id)
            api.wait(http, zone_id, api.delete(http, zone_id, install_id))
        marks["start"] = _rss(server.pid)
        pss["start"] = _pss_total(server.pid)
        counter = itertools.count()
        completed = itertools.count(1)
        lock = threading.Lock()
        finished = threading.Event()

        def sampler() -> None:
            started = time.monotonic()
            while not finished.wait(0.5):
                samples.append((round(time.monotonic() - started, 1), *_rss(server.pid)))
                pss_samples.append(_pss_total(server.pid))

        def client() -> int:
            done = 0
            with server.client() as http:
                while (index := next(counter)) < cycles:
                    task_id, install_id = api.install(http, zone_id, package_id, {"run": f"b7-{index}"})
                    api.wait(http, zone_id, task_id, interval=0.01)
                    api.wait(http, zone_id, api.delete(http, zone_id, install_id), interval=0.01)
                    done += 1
                    with lock:
                        if next(completed) == cycles // 2:
                            marks["half"] = _rss(server.pid)
                            pss["half"] = _pss_total(server.pid)
            return done

        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        started = time.perf_counter()
        try:
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                done = sum(pool.map(lambda _: client(), range(CLIENTS)))
        finally:
            finished.set()
            watcher.join()
        elapsed = time.perf_counter() - started
        marks["end"] = _rss(server.pid)
        pss["end"] = _pss_total(server.pid)
    total = {name: sum(value) for name, value in marks.items()}
    serve = {name: value[0] for name, value in marks.items()}
    return {
        "cycles": done,
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "cycles_per_s": round(done / elapsed, 1),
        "marks": marks,
        "serve": serve,
        "pss": pss,
        "api_peak": max([*serve.values(), *(api_mb for _, api_mb, _ in samples)]),
        "total_peak": max([*total.values(), *(api_mb + workers_mb for _, api_mb, workers_mb in samples)]),
        "api_growth": (serve["end"] - serve["half"]) / serve["half"] * 100,
        "total_growth": (total["end"] - total["half"]) / total["half"] * 100,
        "pss_peak": max([*pss.values(), *pss_samples]),
        "samples": samples,
    }


def _figures(reading: dict[str, Any]) -> dict[str, Any]:
    """The JSON figures of one ``_cycles`` reading."""
    return {
        "cycles": reading["cycles"],
        "clients": reading["clients"],
        "seconds": reading["seconds"],
        "cycles_per_s": reading["cycles_per_s"],
        "rss_mb": {
            name: {
                "api": round(api_mb, 1),
                "worker_processes": round(workers_mb, 1),
                "total": round(api_mb + workers_mb, 1),
            }
            for name, (api_mb, workers_mb) in reading["marks"].items()
        },
        "rss_peak_mb": {"api": round(reading["api_peak"], 1), "total": round(reading["total_peak"], 1)},
        "pss_total_mb": {name: round(value, 1) for name, value in reading["pss"].items()},
        "pss_peak_mb": round(reading["pss_peak"], 1),
        "growth_last_half_pct": {"api": round(reading["api_growth"], 2), "total": round(reading["total_growth"], 2)},
        "rss_samples_mb": [(t, round(api_mb, 1), round(workers_mb, 1)) for t, api_mb, workers_mb in reading["samples"]],
    }


def run(quick: bool) -> Outcome:
    cycles = 1000 if quick else 10_000
    default = _cycles((), cycles)
    single = _cycles(("--in-process-worker",), cycles)
    figures: dict[str, Any] = {**_figures(default), "in_process_worker": _figures(single)}
    serve, marks, pss = default["serve"], default["marks"], default["pss"]
    label = f"{default['cycles']:,} installs + deletes"
    workers = {name: f"worker processes {value[1]:.0f} MB more" for name, value in marks.items()}
    rss_target, growth_target = f"≤ {MAX_RSS_MB:g} MB", f"≤ {MAX_GROWTH_PCT:g} % (none)"
    one, whole = "serve --in-process-worker", "whole service"
    return Outcome(
        figures,
        [
            info("serve RSS at start", serve["start"], "MB", workers["start"]),
            info("serve RSS at half", serve["half"], "MB", workers["half"]),
            info("serve RSS at end", serve["end"], "MB", f"{workers['end']}; {label}"),
            at_most("serve RSS peak", default["api_peak"], "MB", MAX_RSS_MB, rss_target, "the zonecat serve PID"),
            at_most("serve RSS growth in the last half", default["api_growth"], "%", MAX_GROWTH_PCT, growth_target),
            at_most(
                "serve + worker processes RSS peak",
                default["total_peak"],
                "MB",
                MAX_RSS_MB,
                rss_target,
                f"{whole}; a page both processes share is counted in each",
            ),
            at_most(
                "serve + worker processes growth, last half",
                default["total_growth"],
                "%",
                MAX_GROWTH_PCT,
                growth_target,
            ),
            info("serve + worker processes PSS at end", pss["end"], "MB"),
            at_most(
                "serve + worker processes PSS peak",
                default["pss_peak"],
                "MB",
                MAX_RSS_MB,
                f"≤ {MAX_RSS_MB:g} MB",
                f"{whole}; each page counted once, as a container's memory limit counts it",
            ),
            info("install + delete cycles", default["cycles_per_s"], "/s", f"{CLIENTS} clients"),
            info(f"{one} RSS at start", single["serve"]["start"], "MB", "one process: API and worker threads"),
            at_most(f"{one} RSS peak", single["total_peak"], "MB", MAX_RSS_MB, rss_target, whole),
            at_most(f"{one} growth, last half", single["total_growth"], "%", MAX_GROWTH_PCT, growth_target),
            info(f"{one} cycles", single["cycles_per_s"], "/s", f"{CLIENTS} clients"),
        ],
        [] if not quick else ["quick: 1,000 installs and deletes instead of 10,000"],
    )
