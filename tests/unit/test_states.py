"""Task and install lifecycles: every allowed move, and every refused one."""

from __future__ import annotations

import itertools

import pytest

from zonecat.domain.states import (
    INSTALL_MOVES,
    TASK_MOVES,
    IllegalTransition,
    InstallStatus,
    TaskOperation,
    TaskStatus,
    check_install_move,
    check_task_move,
    install_status_after,
)

TASK_ALLOWED = {
    (TaskStatus.PENDING, TaskStatus.RUNNING),
    (TaskStatus.RUNNING, TaskStatus.RUNNING),
    (TaskStatus.RUNNING, TaskStatus.COMPLETED),
    (TaskStatus.RUNNING, TaskStatus.FAILED),
}

INSTALL_ALLOWED = {
    (InstallStatus.PENDING, InstallStatus.ACTIVE),
    (InstallStatus.PENDING, InstallStatus.FAILED),
    (InstallStatus.ACTIVE, InstallStatus.DELETING),
    (InstallStatus.FAILED, InstallStatus.DELETING),
    (InstallStatus.DELETING, InstallStatus.DELETED),
    (InstallStatus.DELETING, InstallStatus.FAILED),
}


@pytest.mark.parametrize(("current", "requested"), list(itertools.product(TaskStatus, TaskStatus)))
def test_task_moves(current: TaskStatus, requested: TaskStatus) -> None:
    if (current, requested) in TASK_ALLOWED:
        check_task_move(current, requested)
    else:
        with pytest.raises(IllegalTransition):
            check_task_move(current, requested)


@pytest.mark.parametrize(("current", "requested"), list(itertools.product(InstallStatus, InstallStatus)))
def test_install_moves(current: InstallStatus, requested: InstallStatus) -> None:
    if (current, requested) in INSTALL_ALLOWED:
        check_install_move(current, requested)
    else:
        with pytest.raises(IllegalTransition):
            check_install_move(current, requested)


def test_tables_cover_every_status() -> None:
    assert set(TASK_MOVES) == set(TaskStatus)
    assert set(INSTALL_MOVES) == set(InstallStatus)
    assert not TASK_MOVES[TaskStatus.COMPLETED] and not TASK_MOVES[TaskStatus.FAILED]
    assert not INSTALL_MOVES[InstallStatus.DELETED]


def test_install_status_after_a_task() -> None:
    assert install_status_after(TaskOperation.CREATE, TaskStatus.COMPLETED) is InstallStatus.ACTIVE
    assert install_status_after(TaskOperation.CREATE, TaskStatus.FAILED) is InstallStatus.FAILED
    assert install_status_after(TaskOperation.DELETE, TaskStatus.COMPLETED) is InstallStatus.DELETED
    assert install_status_after(TaskOperation.DELETE, TaskStatus.FAILED) is InstallStatus.FAILED
    assert install_status_after(TaskOperation.DELETE, TaskStatus.RUNNING) is None
