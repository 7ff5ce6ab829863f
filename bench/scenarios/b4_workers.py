"""B4: sustained installs on PostgreSQL with 1, 2 and 4 `zonecat worker` processes (API separate), next to
procrastinate running the same number of no-op jobs with 1, 2 and 4 worker processes on the same server (its own
database), in the same run; and, for reference, zonecat on SQLite (one process).

zonecat is timed from the first POST until every task is completed (8 wrk connections POST the installs, one at
a time each).
procrastinate is timed from the defer (one ``batch_defer`` of all jobs, workers already running and registered)
until every job is ``succeeded`` (polled every 10 ms).

Both are bounded by CPU here (the API, the workers and PostgreSQL share the machine's two cores), so each run also
measures where its CPU went over the same window (``bench.cpu``): per install, zonecat's API, workers, PostgreSQL,
wrk and the polling harness; per job, procrastinate's workers, PostgreSQL and the harness (its one defer and its
polling). That split is the profile a missed ratio is explained by.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from bench import cpu
from bench.report import Check, Outcome, at_least, info
from bench.scenarios.b3_throughput import throughput
from bench.servers import REPO, ZonecatServer, postgres, stop

if TYPE_CHECKING:
    from tests.pg import PostgresServer

COUNTS = (1, 2, 4)
PROCRASTINATE = [sys.executable, "-m", "procrastinate", "--app", "bench.procrastinate_app.app"]


def _wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _count(dsn: str, query: str, *params: object) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def zonecat_rate(pg: PostgresServer, installs: int, workers: int) -> tuple[float, dict[str, float]]:
    """Completed installs/s, and the CPU per install (ms) by component."""
    database = pg.create_database()
    try:
        with ZonecatServer(pg.url(database), workers=workers) as server:
            # Each `zonecat worker` holds a LISTEN connection once it is ready; start the clock only then.
            _wait_until(
                lambda: (
                    _count(
                        pg.dsn(),
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query ILIKE 'LISTEN%%'",
                        database,
                    )
                    >= workers
                ),
                timeout=20,
            )
            split = cpu.CpuSplit(
                {
                    "api": cpu.processes(lambda: [server.pid]),
                    "workers": cpu.processes(lambda: [worker.pid for worker in server.workers]),
                    "postgresql": cpu.postgres(pg.data),
                    "wrk": cpu.its_children,
                    "harness": cpu.this_process,
                }
            )
            figures = throughput(server, installs, cpu=split)
            return float(figures["installs_per_s"]), cpu.per_item_ms(figures["cpu_seconds"], installs)
    finally:
        pg.drop_database(database)


async def _defer(dsn: str, jobs: int) -> float:
    """Open an app on ``dsn``, then defer ``jobs`` no-op jobs in one batch; the moment the batch started."""
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))
    async with app.open_async():
        started = time.perf_counter()
        await app.configure_task("noop").batch_defer_async(*({} for _ in range(jobs)))
    return started


def procrastinate_rate(pg: PostgresServer, jobs: int, workers: int) -> tuple[float, dict[str, float]]:
    """Succeeded jobs/s, and the CPU per job (ms) by component."""
    database = pg.create_database()
    dsn = pg.dsn(database)
    env = {**os.environ, "BENCH_PROCRASTINATE_DSN": dsn, "PYTHONPATH": str(REPO)}
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="zonecat-bench-procrastinate-") as scratch:
        log = Path(scratch) / "procrastinate.log"
        try:
            with log.open("ab") as out:
                schema = subprocess.run(
                    [*PROCRASTINATE, "schema", "--apply"], env=env, cwd=REPO, stdout=out, stderr=out
                )
                if schema.returncode != 0:
                    raise RuntimeError(
                        f"procrastinate schema --apply failed:\n{log.read_text(errors='replace')[-3000:]}"
                    )
                processes = [
                    subprocess.Popen(
                        [*PROCRASTINATE, "worker", "--concurrency", "1"], env=env, cwd=REPO, stdout=out, stderr=out
                    )
                    for _ in range(workers)
                ]
            if not _wait_until(lambda: _count(dsn, "SELECT count(*) FROM procrastinate_workers") >= workers, 30):
                raise RuntimeError(
                    f"procrastinate workers did not register:\n{log.read_text(errors='replace')[-3000:]}"
                )
            split = cpu.CpuSplit(
                {
                    "workers": cpu.processes(lambda: [process.pid for process in processes]),
                    "postgresql": cpu.postgres(pg.data),
                    "harness": cpu.this_process,
                }
            )
            done = 0
            # One connection for every poll (see ZonecatServer.task_counter), opened before the clock starts.
            with psycopg.connect(dsn, autocommit=True) as observer:

                def finished() -> bool:
                    nonlocal done
                    rows = observer.execute(
                        "SELECT status, count(*) FROM procrastinate_jobs GROUP BY status"
                    ).fetchall()
                    counts = {str(status): int(n) for status, n in rows}
                    if counts.get("failed"):
                        raise RuntimeError(f"procrastinate jobs failed: {counts}")
                    done = counts.get("succeeded", 0)
                    return done >= jobs

                split.start()
                started = asyncio.run(_defer(dsn, jobs))
                if not _wait_until(finished, timeout=600, interval=0.01):
                    raise RuntimeError(f"procrastinate finished only {done} of {jobs} jobs")
                elapsed = time.perf_counter() - started
                seconds = split.stop()
        finally:
            stop(processes)
            pg.drop_database(database)
    return jobs / elapsed, cpu.per_item_ms(seconds, jobs)


def run(quick: bool) -> Outcome:
    installs = 100 if quick else 600
    figures: dict[str, Any] = {
        "installs_or_jobs": installs,
        "zonecat_postgresql": {},
        "procrastinate": {},
        "cpu_ms_per_install": {},
        "cpu_ms_per_job": {},
    }
    with ZonecatServer() as server:
        figures["zonecat_sqlite_1_process"] = throughput(server, installs)["installs_per_s"]
    checks: list[Check] = [info("zonecat SQLite, 1 process", figures["zonecat_sqlite_1_process"], "installs/s")]
    with postgres() as pg:
        figures["postgres_server_version"] = _server_version(pg)
        for count in COUNTS:
            # Interleaved, so that both see the same machine at about the same time.
            ours, our_cpu = zonecat_rate(pg, installs, count)
            theirs, their_cpu = procrastinate_rate(pg, installs, count)
            figures["zonecat_postgresql"][str(count)] = round(ours, 1)
            figures["procrastinate"][str(count)] = round(theirs, 1)
            figures["cpu_ms_per_install"][str(count)] = our_cpu
            figures["cpu_ms_per_job"][str(count)] = their_cpu
            figures.setdefault("ratio", {})[str(count)] = round(ours / theirs, 3)
            plural = "s" if count > 1 else ""
            checks += [
                info(f"zonecat PostgreSQL, {count} worker{plural}", ours, "installs/s"),
                info(f"procrastinate, {count} worker{plural}", theirs, "jobs/s", "no-op jobs"),
                at_least(f"zonecat / procrastinate, {count} worker{plural}", ours / theirs, "x", 1.0, "≥ 1 (zc ≥ pc)"),
                info(
                    f"zonecat CPU per install, {count} worker{plural}", our_cpu["total"], "ms", cpu.described(our_cpu)
                ),
                info(
                    f"procrastinate CPU per job, {count} worker{plural}",
                    their_cpu["total"],
                    "ms",
                    cpu.described(their_cpu),
                ),
            ]
    return Outcome(
        figures,
        checks,
        [
            f"{installs} zonecat installs (3 entities each) vs {installs} procrastinate no-op jobs per worker count; "
            "procrastinate's jobs are deferred in one batch_defer, zonecat's installs are POSTed by 8 wrk connections",
            "CPU per install or job: every process's user + system time over the timed window, by component (the "
            "harness: its polling every 10 ms and, for procrastinate, the defer); on 2 cores a total of T ms bounds "
            "the rate at 2000 / T per second",
        ],
    )


def _server_version(pg: PostgresServer) -> str:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
