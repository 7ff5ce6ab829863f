"""The queue's index, split in two: pending tasks by due time, running tasks by lease end.

``ix_tasks_due`` (status, run_after_ms) over every unfinished task made the claim read and sort all of them to
find the oldest due one (``ORDER BY run_after_ms, id`` across both statuses): with a backlog of 300 tasks,
300 rows per claim on PostgreSQL, whose planner then preferred a sequential scan. Each new index is in the order
its tasks are claimed, so a claim and the worker's next-due read each read one index entry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_UNFINISHED = sa.text("status IN ('pending', 'running')")
_PENDING = sa.text("status = 'pending'")
_LEASED = sa.text("status = 'running'")


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_due", sqlite_where=_UNFINISHED, postgresql_where=_UNFINISHED)
        batch_op.create_index(
            "ix_tasks_pending", ["run_after_ms", "id"], unique=False, sqlite_where=_PENDING, postgresql_where=_PENDING
        )
        batch_op.create_index(
            "ix_tasks_leased", ["locked_until_ms"], unique=False, sqlite_where=_LEASED, postgresql_where=_LEASED
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_leased", sqlite_where=_LEASED, postgresql_where=_LEASED)
        batch_op.drop_index("ix_tasks_pending", sqlite_where=_PENDING, postgresql_where=_PENDING)
        batch_op.create_index(
            "ix_tasks_due",
            ["status", "run_after_ms"],
            unique=False,
            sqlite_where=_UNFINISHED,
            postgresql_where=_UNFINISHED,
        )
