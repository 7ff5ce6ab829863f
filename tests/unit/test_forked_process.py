"""The parent's handle on a forked worker process (``zonecat.worker.process.Forked``), and what a fork resets."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from zonecat import ids
from zonecat.worker.process import Forked


def _fork(body: object) -> int:
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = body()  # type: ignore[operator]
        finally:
            os._exit(code)
    return pid


def test_wait_times_out_while_the_child_runs_then_returns_its_exit_code() -> None:
    child = Forked(_fork(lambda: (time.sleep(0.3), 3)[1]))
    try:
        assert child.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.05)
        assert child.wait(timeout=10) == 3
        assert child.poll() == 3
        child.send_signal(signal.SIGTERM)  # reaped: nothing is signalled, nothing raises
    finally:
        child.close()


def test_a_signalled_child_reports_the_signal_as_a_negative_code() -> None:
    child = Forked(_fork(lambda: (time.sleep(30), 0)[1]))
    try:
        child.kill()
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.close()


def test_a_forked_child_does_not_continue_its_parents_id_sequence() -> None:
    ids.new_id("tsk")
    assert ids._last  # the parent's sequence state

    def child_state() -> int:
        return 0 if not ids._last else 1

    child = Forked(_fork(child_state))
    try:
        assert child.wait(timeout=10) == 0
    finally:
        child.close()
