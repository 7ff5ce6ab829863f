"""The worker: claims due tasks from the tasks table, holds a lease renewed by a heartbeat, runs them.

Several workers (threads here, processes on PostgreSQL) can run side by side; the guarded claim decides who runs
what. A worker that stops gracefully finishes its current entity step and gives the lease back, so the task is
resumed at once by whoever claims it next.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.clock import now_ms
from zonecat.domain import workers
from zonecat.engine.provisioner import Interrupted, TaskRun
from zonecat.settings import Settings
from zonecat.store import tasks as task_store
from zonecat.store.database import Database
from zonecat.store.prepared import Answer

log = logging.getLogger("zonecat.worker")


def default_worker_id(worker: object) -> str:
    """``host:pid:n`` (see ``zonecat.domain.workers``)."""
    return workers.worker_id(socket.gethostname(), os.getpid(), id(worker))


class Worker:
    """Runs tasks until ``stop()``; ``wake()`` cuts the idle sleep short when a task was just enqueued."""

    def __init__(self, db: Database, settings: Settings, name: str | None = None) -> None:
        self.db = db
        self.settings = settings
        self.worker_id = name or default_worker_id(self)
        self.lease_ms = int(settings.lease_seconds * 1000)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._next_due: int | None = None  # seen by the last claim that found nothing; bounds the idle sleep
        self.tasks_run = 0
        # One heartbeat thread for the worker's life (not one per task): it renews the lease of ``_current``.
        self._current: dict[str, Any] | None = None
        self._lost_task: str | None = None
        self._heart: threading.Thread | None = None
        self._heart_lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Claim and run tasks until stopped."""
        log.info("worker started", extra={"worker_id": self.worker_id})
        while not self._stop.is_set():
            try:
                ran = self.run_one()
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
                log.warning("database unavailable, retrying", extra={"error": str(exc).splitlines()[0]})
                self._stop.wait(1.0)
                continue
            except Exception:
                # Anything else (a bug, a value the database refuses) must not end this thread silently: the
                # worker would look alive while no task ever runs again.
                log.exception("worker loop failed, retrying", extra={"worker_id": self.worker_id})
                self._stop.wait(1.0)
                continue
            if not ran:
                self._idle()
        log.info("worker stopped", extra={"worker_id": self.worker_id})

    def _idle(self) -> None:
        """Sleep until woken, the next task is due (as the claim that found nothing saw it), or a poll is due."""
        timeout = self.settings.poll_seconds
        due = self._next_due
        if due is not None:
            timeout = max(0.0, min(timeout, (due - now_ms()) / 1000 + 0.01))
        self._wake.wait(timeout)
        self._wake.clear()

    def run_one(self) -> bool:
        """Claim a due task and run it, then every task claimed by the end of the one before (see ``_claim_next``);
        False when nothing was due."""
        with self.db.write_statement() as conn:
            task, self._next_due = task_store.claim_or_next_due(conn, self.worker_id, now_ms(), self.lease_ms)
        if task is None:
            return False
        while task is not None:
            task = self._run_claimed(task)
        return True

    def _claim_next(self, conn: sa.Connection) -> Answer[dict[str, Any] | None]:
        """Claim the next due task inside the transaction that ends the current one: while tasks wait, each costs
        one write transaction fewer (on SQLite one turn of the write lock fewer, on PostgreSQL one round trip).
        The claim commits with that end, exactly as a claim of its own would have right after it. The claimed task
        is read from the answer (on PostgreSQL once the end's statements were all sent)."""
        if self._stop.is_set():
            return Answer.known(None)
        return task_store.claim_announced_later(conn, self.worker_id, now_ms(), self.lease_ms)

    def _run_claimed(self, task: dict[str, Any]) -> dict[str, Any] | None:
        """Run a claimed task; the next task its ending transaction claimed, if any."""
        install = task.pop("install", None)
        resumed = task.pop("previous_status") == "running"
        del task["previous_owner"], task["previous_released"]
        log.info(
            "task running",
            extra={"task_id": task["id"], "operation": task["operation"], "resumed": resumed, "zone": task["zone_id"]},
        )
        following = self._run_with_heartbeat(task, install)
        self.tasks_run += 1
        return following

    def _ensure_heartbeat(self) -> None:
        with self._heart_lock:
            if self._heart is None or not self._heart.is_alive():
                self._heart = threading.Thread(target=self._beat, name=f"heartbeat-{self.worker_id}", daemon=True)
                self._heart.start()

    def _beat(self) -> None:
        """Renew the current task's lease every heartbeat and note a lease another worker took over. Ends once the
        worker is stopping and its last task is over (it keeps beating while a stopping worker finishes a step)."""
        period = self.settings.heartbeat_seconds
        pause = threading.Event()  # never set: unlike _stop, a stop() must not cut these sleeps short
        while not (self._stop.is_set() and self._current is None):
            pause.wait(period)
            task = self._current
            if task is None:
                continue
            try:
                with self.db.write() as conn:
                    if not task_store.renew_lease(conn, task["id"], self.worker_id, now_ms(), self.lease_ms):
                        if self._current is task:
                            self._lost_task = task["id"]
            except sa.exc.SQLAlchemyError:
                continue

    def _run_with_heartbeat(self, task: dict[str, Any], install: dict[str, Any] | None) -> dict[str, Any] | None:
        self._ensure_heartbeat()
        task_id = task["id"]
        self._lost_task = None
        self._current = task
        run = TaskRun(
            self.db,
            task,
            self.worker_id,
            self.lease_ms,
            lambda: self._stop.is_set() or self._lost_task == task_id,
            claim_next=self._claim_next,
            install=install,
        )
        try:
            run.run()
        except Interrupted:
            self._release(task_id)
        except errors.LeaseLost:
            log.warning("lease lost; another worker owns the task now", extra={"task_id": task_id})
        except (sa.exc.OperationalError, sa.exc.InterfaceError):
            raise  # the database is away: the lease expires and the task is resumed later
        except Exception as exc:
            log.exception("task crashed", extra={"task_id": task_id})
            self._fail_after_crash(run, task, exc)
        finally:
            self._current = None
        return run.next_task

    def _release(self, task_id: str) -> None:
        with self.db.write() as conn:
            task_store.release_lease(conn, task_id, self.worker_id)
        log.info("task released for resumption", extra={"task_id": task_id})

    def _fail_after_crash(self, run: TaskRun, task: dict[str, Any], exc: Exception) -> None:
        """A bug inside a step: fail the task cleanly (rolling back a create) instead of retrying forever."""
        message = f"internal error: {type(exc).__name__}"
        try:
            if task["operation"] == "create":
                run.fail_and_roll_back(None, None, message)
            else:
                run.end_failed(("deleting",), message)
        except Exception:
            log.exception("could not record the failure; the task will be resumed", extra={"task_id": task["id"]})


def drain(db: Database, settings: Settings, timeout: float = 30.0) -> int:
    """Run tasks in this thread until none is due (tests and one-shot use). Returns how many ran."""
    worker = Worker(db, settings, name="drain")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.run_one():
        pass
    return worker.tasks_run
