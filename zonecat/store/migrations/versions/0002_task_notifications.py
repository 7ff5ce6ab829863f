"""PostgreSQL: NOTIFY zonecat_tasks when a task becomes claimable (created, or handed back by a stopping worker).

Workers LISTEN on that channel, so a new task starts at once instead of at the next poll. SQLite has no
NOTIFY: there the API wakes the in-process worker directly, and other processes poll.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "zonecat_tasks"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION zonecat_notify_task() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', NEW.id);
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER zonecat_task_created AFTER INSERT ON tasks
        FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION zonecat_notify_task()
        """
    )
    op.execute(
        """
        CREATE TRIGGER zonecat_task_released AFTER UPDATE OF locked_until_ms ON tasks
        FOR EACH ROW WHEN (NEW.status = 'running' AND NEW.locked_until_ms = 0) EXECUTE FUNCTION zonecat_notify_task()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS zonecat_task_released ON tasks")
    op.execute("DROP TRIGGER IF EXISTS zonecat_task_created ON tasks")
    op.execute("DROP FUNCTION IF EXISTS zonecat_notify_task()")
