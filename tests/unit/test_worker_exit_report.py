"""How serve logs an exit of its worker process it did not ask for (``zonecat.worker.process.exit_report``)."""

from __future__ import annotations

import logging
import signal

import pytest

from zonecat.worker.process import exit_report


@pytest.mark.parametrize(
    ("code", "level", "words"),
    [
        (0, logging.WARNING, "exited without error"),
        (-signal.SIGTERM, logging.WARNING, "stopped by SIGTERM, not sent by serve"),
        (-signal.SIGINT, logging.WARNING, "stopped by SIGINT"),
        (-signal.SIGHUP, logging.WARNING, "stopped by SIGHUP"),
        (-signal.SIGKILL, logging.ERROR, "killed by SIGKILL"),
        (-signal.SIGSEGV, logging.ERROR, "killed by SIGSEGV"),
        (1, logging.ERROR, "exited with code 1"),
        (-200, logging.ERROR, "killed by signal 200"),
        (None, logging.ERROR, "ended"),
    ],
)
def test_a_stop_on_purpose_is_a_warning_and_a_crash_an_error(code: int | None, level: int, words: str) -> None:
    found_level, message = exit_report(code)
    assert found_level == level
    assert words in message
    assert message.endswith("restarting it")
