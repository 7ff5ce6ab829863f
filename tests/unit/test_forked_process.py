"""The parent's handle on a forked worker process (``zonecat.worker.process``), and what a fork resets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from zonecat.worker.process import Forked


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
