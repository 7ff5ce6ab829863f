"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entities",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("zone_id", sa.String(length=26), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("identifier", sa.String(length=2048), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("secret_attributes", sa.JSON(), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("created_by_install_id", sa.String(length=26), nullable=True),
        sa.Column("created_by_task_id", sa.String(length=26), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("zone_id", "type", "identifier", name="uq_entities_natural_key"),
    )
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.create_index("ix_entities_zone", ["zone_id", "id"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("body_sha", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=26), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "key", "method", "path"),
    )
    op.create_table(
        "installs",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("zone_id", sa.String(length=26), nullable=False),
        sa.Column("package_id", sa.String(length=26), nullable=False),
        sa.Column("package_slug", sa.String(length=128), nullable=False),
        sa.Column("package_version", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.String(length=26), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("secret_inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("installs", schema=None) as batch_op:
        batch_op.create_index("ix_installs_package", ["package_id", "status"], unique=False)
        batch_op.create_index("ix_installs_zone", ["zone_id", "id"], unique=False)

    op.create_table(
        "package_versions",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("package_id", sa.String(length=26), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("manifest_sha", sa.String(length=64), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("archived_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package_id", "version", name="uq_package_versions_number"),
    )
    op.create_table(
        "packages",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("zone_key", sa.String(length=26), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("slug", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("draft_id", sa.String(length=26), nullable=False),
        sa.Column("draft_manifest", sa.JSON(), nullable=False),
        sa.Column("draft_sha", sa.String(length=64), nullable=False),
        sa.Column("draft_updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "zone_key", "slug", name="uq_packages_scope_slug"),
    )
    op.create_table(
        "task_events",
        sa.Column("task_id", sa.String(length=26), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("local_name", sa.String(length=64), nullable=True),
        sa.Column("entity_type", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=True),
        sa.Column("entity_id", sa.String(length=26), nullable=True),
        sa.Column("href", sa.String(length=255), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", "seq"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("zone_id", sa.String(length=26), nullable=False),
        sa.Column("install_id", sa.String(length=26), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("package_id", sa.String(length=26), nullable=False),
        sa.Column("package_slug", sa.String(length=128), nullable=False),
        sa.Column("package_version", sa.Integer(), nullable=False),
        sa.Column("run_after_ms", sa.BigInteger(), nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_due",
            ["status", "run_after_ms"],
            unique=False,
            sqlite_where=sa.text("status IN ('pending', 'running')"),
            postgresql_where=sa.text("status IN ('pending', 'running')"),
        )
        batch_op.create_index("ix_tasks_install", ["install_id", "id"], unique=False)
        batch_op.create_index("ix_tasks_zone", ["zone_id", "id"], unique=False)
        batch_op.create_index(
            "uq_tasks_one_unfinished_per_install",
            ["install_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'running')"),
            postgresql_where=sa.text("status IN ('pending', 'running')"),
        )

    op.create_table(
        "tokens",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("zones", sa.JSON(), nullable=True),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "zones",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("organization_id", "name", name="uq_zones_org_name"),
    )
    op.create_table(
        "entity_uses",
        sa.Column("install_id", sa.String(length=26), nullable=False),
        sa.Column("local_name", sa.String(length=64), nullable=False),
        sa.Column("entity_id", sa.String(length=26), nullable=False),
        sa.Column("zone_id", sa.String(length=26), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=26), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["entities.id"],
        ),
        sa.PrimaryKeyConstraint("install_id", "local_name"),
    )
    with op.batch_alter_table("entity_uses", schema=None) as batch_op:
        batch_op.create_index("ix_entity_uses_entity", ["entity_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("entity_uses", schema=None) as batch_op:
        batch_op.drop_index("ix_entity_uses_entity")

    op.drop_table("entity_uses")
    op.drop_table("zones")
    op.drop_table("tokens")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_tasks_one_unfinished_per_install",
            sqlite_where=sa.text("status IN ('pending', 'running')"),
            postgresql_where=sa.text("status IN ('pending', 'running')"),
        )
        batch_op.drop_index("ix_tasks_zone")
        batch_op.drop_index("ix_tasks_install")
        batch_op.drop_index(
            "ix_tasks_due",
            sqlite_where=sa.text("status IN ('pending', 'running')"),
            postgresql_where=sa.text("status IN ('pending', 'running')"),
        )

    op.drop_table("tasks")
    op.drop_table("task_events")
    op.drop_table("packages")
    op.drop_table("package_versions")
    with op.batch_alter_table("installs", schema=None) as batch_op:
        batch_op.drop_index("ix_installs_zone")
        batch_op.drop_index("ix_installs_package")

    op.drop_table("installs")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("entities", schema=None) as batch_op:
        batch_op.drop_index("ix_entities_zone")

    op.drop_table("entities")
