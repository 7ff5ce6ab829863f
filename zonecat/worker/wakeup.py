"""Wake-ups for workers on PostgreSQL: LISTEN on the channel the tasks table notifies (migration 0002).

A notification only shortens a worker's idle wait; the claim query still decides who runs what, so a lost
notification costs at most one poll interval and a duplicate costs one empty claim.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

log = logging.getLogger("zonecat.wakeup")

CHANNEL = "zonecat_tasks"


class Listener:
    """A daemon thread holding one LISTEN connection; calls ``wake`` on every notification, reconnects on loss."""

    def __init__(self, conninfo: str, wake: Callable[[], None], retry_seconds: float = 1.0) -> None:
        self.conninfo = conninfo
        self.wake = wake
        self.retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="task-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Something may have been enqueued while we were not listening.
                    self.wake()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except psycopg.Error as exc:
                log.warning("task listener lost its connection; reconnecting", extra={"error": type(exc).__name__})
                self._stop.wait(self.retry_seconds)


def conninfo_of(sqlalchemy_url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
