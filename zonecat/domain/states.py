"""Task and install lifecycles (design §2): one table of allowed moves each, checked in pure code.

The store repeats the *guard* of each move in SQL (``… WHERE status = :expected``) so that two processes racing
on one row cannot both win; these tables decide which moves exist at all.
"""

from __future__ import annotations

import enum
from typing import Final


class TaskStatus(enum.StrEnum):
    PENDING = "pending"  # created by the API; waits for a worker to claim it
    RUNNING = "running"  # claimed by a worker holding a lease; an expired lease makes it claimable again
    COMPLETED = "completed"  # every step done; terminal
    FAILED = "failed"  # a step failed and what the task created was rolled back; terminal


class TaskOperation(enum.StrEnum):
    CREATE = "create"
    DELETE = "delete"


class InstallStatus(enum.StrEnum):
    PENDING = "pending"  # its create task has not finished
    ACTIVE = "active"  # its create task completed
    DELETING = "deleting"  # a delete task was accepted
    FAILED = "failed"  # its create or delete task failed
    DELETED = "deleted"  # its delete task completed; the row stays readable forever


TASK_MOVES: Final[dict[TaskStatus, frozenset[TaskStatus]]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.RUNNING}),
    # RUNNING -> RUNNING is a resume: the lease expired and another worker claimed the task.
    TaskStatus.RUNNING: frozenset({TaskStatus.RUNNING, TaskStatus.COMPLETED, TaskStatus.FAILED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
}

INSTALL_MOVES: Final[dict[InstallStatus, frozenset[InstallStatus]]] = {
    InstallStatus.PENDING: frozenset({InstallStatus.ACTIVE, InstallStatus.FAILED}),
    InstallStatus.ACTIVE: frozenset({InstallStatus.DELETING}),
    InstallStatus.FAILED: frozenset({InstallStatus.DELETING}),
    InstallStatus.DELETING: frozenset({InstallStatus.DELETED, InstallStatus.FAILED}),
    InstallStatus.DELETED: frozenset(),
}

UNFINISHED_TASK_STATUSES: Final = (TaskStatus.PENDING, TaskStatus.RUNNING)


class IllegalTransition(Exception):
    """A lifecycle move that the state machine does not allow."""

    def __init__(self, what: str, current: str, requested: str) -> None:
        super().__init__(f"{what} cannot move from {current!r} to {requested!r}")
        self.current = current
        self.requested = requested


def check_task_move(current: TaskStatus, requested: TaskStatus) -> None:
    """Raise ``IllegalTransition`` unless a task may move from ``current`` to ``requested``."""
    if requested not in TASK_MOVES[current]:
        raise IllegalTransition("task", current, requested)


def check_install_move(current: InstallStatus, requested: InstallStatus) -> None:
    """Raise ``IllegalTransition`` unless an install may move from ``current`` to ``requested``."""
    if requested not in INSTALL_MOVES[current]:
        raise IllegalTransition("install", current, requested)


def install_status_after(operation: TaskOperation, task_status: TaskStatus) -> InstallStatus | None:
    """The install status that a finished task implies (None while the task is unfinished)."""
    if task_status is TaskStatus.COMPLETED:
        return InstallStatus.ACTIVE if operation is TaskOperation.CREATE else InstallStatus.DELETED
    if task_status is TaskStatus.FAILED:
        return InstallStatus.FAILED
    return None
