"""The parent's handle on a forked worker process (``zonecat.worker.process``), and what a fork resets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from zonecat.cli.server_commands import migrate_apart
from zonecat.settings import Settings
from zonecat.store.database import HEAD_REVISION, Database
from zonecat.worker.process import Forked, WorkerProcess, fitting_title


def _fork(body: Callable[[], int]) -> int:
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    return pid


def test_wait_times_out_while_the_child_runs_then_returns_its_exit_code() -> None:
    release_read, release_write = os.pipe()
    child = Forked(_fork(lambda: 3 if os.read(release_read, 1) == b"x" else 4))
    os.close(release_read)
    try:
        assert child.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.05)
        os.write(release_write, b"x")
        assert child.wait(timeout=10) == 3
        assert child.poll() == 3
        child.send_signal(signal.SIGTERM)  # reaped: nothing is signalled, nothing raises
    finally:
        os.close(release_write)
        child.close()
    child.close()  # a second close does nothing (the fd number may belong to someone else by now)


def test_a_signalled_child_reports_the_signal_as_a_negative_code() -> None:
    release_read, release_write = os.pipe()
    child = Forked(_fork(lambda: len(os.read(release_read, 1))))
    os.close(release_read)
    try:
        child.kill()
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        os.close(release_write)
        child.close()


def test_a_forked_worker_process_that_was_never_started_ends_with_stop() -> None:
    # In a fresh interpreter, as in serve, where the fork is the only thread's: the child sets its death signal and
    # name through libc, which must not meet a lock another thread of the test process held at the fork.
    script = """
import os, sys
from zonecat.worker.process import WorkerProcess
worker_process = WorkerProcess()
worker_process.fork(lambda *fds: os.write(1, b"ran"))  # would run in the child, after start()
pid = worker_process.pid
worker_process.stop(timeout=10)
try:
    os.waitpid(pid, os.WNOHANG)
except ChildProcessError:
    print("reaped")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "reaped\n"


def test_a_forked_child_does_not_continue_its_parents_id_sequence() -> None:
    # In a fresh interpreter: forking the test process itself would fork its other threads' locks.
    script = """
import os
from zonecat import ids
ids.new_id("tsk")
assert ids._last
pid = os.fork()
if pid == 0:
    os._exit(0 if not ids._last else 1)
_, status = os.waitpid(pid, 0)
raise SystemExit(os.waitstatus_to_exitcode(status))
"""
    assert subprocess.run([sys.executable, "-c", script], timeout=60, check=False).returncode == 0


def test_the_title_that_fits_the_argv_area_is_taken_whole() -> None:
    titles = (b"zonecat worker --parent-pid 123", b"zonecat worker")
    assert fitting_title(titles, 64) == b"zonecat worker --parent-pid 123"
    assert fitting_title(titles, 32) == b"zonecat worker --parent-pid 123"  # 31 bytes and the NUL
    assert fitting_title(titles, 31) == b"zonecat worker"
    assert fitting_title(titles, 8) == b"zonecat"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_failed_fork_leaves_nothing_open_and_start_spawns_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    before = _open_fds()
    worker_process = WorkerProcess()
    worker_process.fork(lambda *fds: None)
    assert worker_process.pid is None and worker_process._go_write is None  # start() will spawn
    assert _open_fds() == before


def test_a_failed_fork_leaves_the_migration_to_boot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refuse)
    settings = Settings(data_dir=tmp_path, database_url="")
    migrate_apart(settings)  # no exception, nothing migrated
    db = Database(settings.effective_database_url)
    try:
        assert db.current_revision() is None
        db.migrate()
        assert db.current_revision() == HEAD_REVISION
    finally:
        db.dispose()
