"""Processes the benchmarks start: `zonecat serve` / `zonecat worker`, a throwaway PostgreSQL, and /proc readings."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import psycopg

if TYPE_CHECKING:
    from tests.pg import PostgresServer

TOKEN = "zc_bench_token"
REPO = Path(__file__).resolve().parent.parent
ZONECAT = str(Path(sys.executable).with_name("zonecat"))
QUIET = subprocess.DEVNULL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], what: str, log: Path | None, timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail early (with the log's tail) if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"{what} did not start (exit code {process.poll()}){tail}")


def stop(processes: list[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """SIGTERM each process (by its own PID), then SIGKILL whichever is still alive after ``timeout``."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ZonecatServer:
    """A `zonecat serve` on SQLite (the API plus the worker it runs itself) or, with ``database_url``,
    `serve --no-worker` plus ``workers`` `zonecat worker` processes on that database.

    ``serve_args`` are more options of `zonecat serve` on SQLite (``--in-process-worker``: one process).
    ``data_dir`` reuses an existing data directory (kept on close); without it a temporary one is made and removed.
    """

    def __init__(
        self,
        database_url: str | None = None,
        workers: int = 0,
        data_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        serve_args: Sequence[str] = (),
    ) -> None:
        self.owns_data_dir = data_dir is None
        self.database_url = database_url
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="zonecat-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.data_dir / "bench-serve.log"
        environment = dict(os.environ)
        environment.update(
            {
                "ZONECAT_DATA_DIR": str(self.data_dir),
                "ZONECAT_BOOTSTRAP_TOKEN": TOKEN,
                "ZONECAT_PORT": str(self.port),
                "ZONECAT_RATE_LIMIT": "0",
                "ZONECAT_LOG_LEVEL": "WARNING",
            }
        )
        environment.update(env or {})
        self.workers: list[subprocess.Popen[bytes]] = []
        with self.log.open("ab") as log:
            if database_url:
                environment["ZONECAT_DATABASE_URL"] = database_url  # API and workers share the data dir's key
                subprocess.run([ZONECAT, "migrate"], env=environment, check=True, stdout=log, stderr=log)
                self.process = subprocess.Popen(
                    [ZONECAT, "serve", "--no-worker"], env=environment, stdout=log, stderr=log
                )
                self.workers = [
                    subprocess.Popen([ZONECAT, "worker"], env=environment, stdout=log, stderr=log)
                    for _ in range(workers)
                ]
            else:
                self.process = subprocess.Popen(
                    [ZONECAT, "serve", *serve_args], env=environment, stdout=log, stderr=log
                )
        try:
            wait_healthy(self.url + "/healthz", self.process, "zonecat serve", self.log)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    @contextlib.contextmanager
    def task_counter(self) -> Iterator[Callable[[str], dict[str, int]]]:
        """A function giving a zone's tasks by status, counted in zonecat's database itself (one read-only query),
        the way B4 counts procrastinate's jobs: an observer polling through the API would add its own requests,
        and the server's CPU for them, to the load being measured. Every count goes through one connection, opened
        here: a new PostgreSQL connection per poll costs the server ~5 ms of CPU (a backend started and torn
        down), half a core at one poll every 10 ms."""
        query = "SELECT status, count(*) FROM tasks WHERE zone_id = {} GROUP BY status"
        if self.database_url:
            dsn = self.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
            with psycopg.connect(dsn, autocommit=True) as conn:
                yield lambda zone_id: _by_status(conn.execute(query.format("%s"), (zone_id,)).fetchall())
        else:
            path = self.data_dir / "zonecat.db"
            # Outside a transaction (sqlite3 opens none for a SELECT), each count reads the newest commit.
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
                yield lambda zone_id: _by_status(conn.execute(query.format("?"), (zone_id,)).fetchall())

    def wait_zone(self, zone_id: str, expected: int, interval: float = 0.01, timeout: float = 3600) -> None:
        """Wait until no task of the zone is pending or running, counting them (``task_counter``) every
        ``interval``, then check that ``expected`` tasks completed and none failed."""
        deadline = time.monotonic() + timeout
        with self.task_counter() as task_counts:
            while True:
                counts = task_counts(zone_id)
                if not counts.get("pending") and not counts.get("running"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"tasks of zone {zone_id} still unfinished after {timeout} s: {counts}")
                time.sleep(interval)
        if counts.get("failed") or counts.get("completed") != expected:
            raise RuntimeError(f"zone {zone_id}: task counts {counts}, {expected} completed expected")

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=timeout)

    def close(self) -> None:
        children = descendants(self.process.pid)  # serve's own worker process: stopped by serve, else by us
        stop([self.process, *self.workers])
        for pid in children:
            with contextlib.suppress(OSError):  # gone already, as it should be
                if b"zonecat" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        if self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        else:
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> ZonecatServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextlib.contextmanager
def postgres() -> Iterator[PostgresServer]:
    """The test suite's throwaway PostgreSQL (tests/pg.py): fsync off, on a free loopback port, removed after."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.pg import PostgresServer

    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def postgres_version() -> str | None:
    """``postgres --version`` of the binaries tests/pg.py would use, or None when there are none."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        from tests.pg import PostgresError, find_bindir

        bindir = find_bindir()
    except (ImportError, PostgresError):
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    return None


# -- /proc readings ----------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` (VmRSS of /proc/<pid>/status) in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` (Pss of /proc/<pid>/smaps_rollup) in MB (10^6 bytes): its private pages
    plus its share of the pages it shares with other processes (shared libraries), so that the PSS of several
    processes adds up to the memory they take together, where their RSS counts each shared page once per process."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no Pss for pid {pid}")


def _by_status(rows: Sequence[Sequence[object]]) -> dict[str, int]:
    return {str(status): int(str(count)) for status, count in rows}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The PIDs of every live descendant of ``pid`` (`zonecat serve` starts its worker as a child process)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2 :].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    queue = list(parents.get(pid, []))
    while queue:
        child = queue.pop()
        found.append(child)
        queue.extend(parents.get(child, []))
    return sorted(found)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its live descendants."""
    total = 0.0
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total
