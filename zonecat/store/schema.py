"""The tables, as SQLAlchemy Core metadata. Alembic's revisions create them; this module is what the code
queries. Times are integer Unix milliseconds (``*_ms``): comparable and identical on every database."""

from __future__ import annotations

import functools

import sqlalchemy as sa

from zonecat.store.prepared import Prepared
from zonecat.store.secrets import EncryptedJSON

metadata = sa.MetaData()

# The condition of the partial indexes on unfinished tasks. Queries that want those indexes repeat it literally
# (``UNFINISHED``): SQLite only uses a partial index when the query's WHERE contains the index's own condition.
UNFINISHED = _UNFINISHED = sa.text("status IN ('pending', 'running')")
# The queue's two partial indexes, one per way a task becomes claimable, each in the order it is claimed: a query
# that wants the oldest due task reads one index entry instead of sorting every unfinished task.
PENDING = _PENDING = sa.text("status = 'pending'")
LEASED = _LEASED = sa.text("status = 'running'")

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("zones", sa.JSON, nullable=True),
    sa.Column("read_only", sa.Boolean, nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("revoked_at_ms", sa.BigInteger, nullable=True),
)

zones = sa.Table(
    "zones",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("organization_id", "name", name="uq_zones_org_name"),
)

packages = sa.Table(
    "packages",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    # '' for a global package: a non-null key lets one unique constraint cover both scopes on every database.
    sa.Column("zone_key", sa.String(26), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("slug", sa.String(128), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("draft_id", sa.String(26), nullable=False),
    sa.Column("draft_manifest", sa.JSON, nullable=False),
    sa.Column("draft_sha", sa.String(64), nullable=False),
    sa.Column("draft_updated_at_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("organization_id", "zone_key", "slug", name="uq_packages_scope_slug"),
)

package_versions = sa.Table(
    "package_versions",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("package_id", sa.String(26), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("manifest", sa.JSON, nullable=False),
    sa.Column("manifest_sha", sa.String(64), nullable=False),
    sa.Column("owner_type", sa.String(16), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("archived_at_ms", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("package_id", "version", name="uq_package_versions_number"),
)

installs = sa.Table(
    "installs",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("zone_id", sa.String(26), nullable=False),
    sa.Column("package_id", sa.String(26), nullable=False),
    sa.Column("package_slug", sa.String(128), nullable=False),
    sa.Column("package_version", sa.Integer, nullable=False),
    sa.Column("version_id", sa.String(26), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    # Write-only inputs: kept apart so that no read path can return them by accident, and encrypted at rest.
    sa.Column("secret_inputs", EncryptedJSON("installs.secret_inputs"), nullable=False),
    sa.Column("outputs", sa.JSON, nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_installs_zone", "zone_id", "id"),
    sa.Index("ix_installs_package", "package_id", "status"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("zone_id", sa.String(26), nullable=False),
    sa.Column("install_id", sa.String(26), nullable=False),
    sa.Column("operation", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # 'apply' while walking forward, 'rollback' once a create failed and is being undone.
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("error_message", sa.Text, nullable=True),
    # Links are derived from the step events; only the warnings planned at DELETE time are stored.
    sa.Column("warnings", sa.JSON, nullable=False),
    sa.Column("package_id", sa.String(26), nullable=False),
    sa.Column("package_slug", sa.String(128), nullable=False),
    sa.Column("package_version", sa.Integer, nullable=False),
    sa.Column("run_after_ms", sa.BigInteger, nullable=False),
    sa.Column("locked_by", sa.String(64), nullable=True),
    sa.Column("locked_until_ms", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("event_seq", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_tasks_zone", "zone_id", "id"),
    sa.Index("ix_tasks_install", "install_id", "id"),
    # The queue: only unfinished rows are indexed, so finished tasks never slow the claim; pending tasks in the
    # order they become due, running tasks in the order their leases end.
    sa.Index("ix_tasks_pending", "run_after_ms", "id", sqlite_where=_PENDING, postgresql_where=_PENDING),
    sa.Index("ix_tasks_leased", "locked_until_ms", sqlite_where=_LEASED, postgresql_where=_LEASED),
    # At most one unfinished task per install (design §2), decided by the database.
    sa.Index(
        "uq_tasks_one_unfinished_per_install",
        "install_id",
        unique=True,
        sqlite_where=_UNFINISHED,
        postgresql_where=_UNFINISHED,
    ),
)

task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column("task_id", sa.String(26), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=True),
    sa.Column("local_name", sa.String(64), nullable=True),
    sa.Column("entity_type", sa.String(64), nullable=True),
    sa.Column("action", sa.String(32), nullable=True),
    sa.Column("entity_id", sa.String(26), nullable=True),
    sa.Column("href", sa.String(255), nullable=True),
    sa.Column("message", sa.Text, nullable=True),
)

entities = sa.Table(
    "entities",
    metadata,
    sa.Column("id", sa.String(26), primary_key=True),
    sa.Column("organization_id", sa.String(64), nullable=False),
    sa.Column("zone_id", sa.String(26), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("identifier", sa.String(2048), nullable=False),
    sa.Column("slug", sa.String(63), nullable=False),
    sa.Column("attributes", sa.JSON, nullable=False),
    # Write-only attributes (``client_secret``, ``data``): encrypted at rest (zonecat.store.secrets).
    sa.Column("secret_attributes", EncryptedJSON("entities.secret_attributes"), nullable=False),
    sa.Column("managed", sa.Boolean, nullable=False),
    sa.Column("created_by_install_id", sa.String(26), nullable=True),
    sa.Column("created_by_task_id", sa.String(26), nullable=True),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    # The natural key (design §5): two installs racing for one provider end with one row.
    sa.UniqueConstraint("zone_id", "type", "identifier", name="uq_entities_natural_key"),
    sa.Index("ix_entities_zone", "zone_id", "id"),
)

entity_uses = sa.Table(
    "entity_uses",
    metadata,
    sa.Column("install_id", sa.String(26), primary_key=True),
    sa.Column("local_name", sa.String(64), primary_key=True),
    sa.Column("entity_id", sa.String(26), sa.ForeignKey("entities.id"), nullable=False),
    sa.Column("zone_id", sa.String(26), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("task_id", sa.String(26), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_entity_uses_entity", "entity_id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("organization_id", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("method", sa.String(8), primary_key=True),
    sa.Column("path", sa.String(512), primary_key=True),
    sa.Column("body_sha", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(26), nullable=False),
    sa.Column("created_at_ms", sa.BigInteger, nullable=False),
)


def insert_row(conn: sa.Connection, table: sa.Table, row: dict[str, object]) -> None:
    """Insert ``row`` into ``table``, through the driver (``Prepared``: compiled once per set of columns). Columns
    the table lacks are refused."""
    unknown = set(row) - set(table.c.keys())
    if unknown:
        raise TypeError(f"{table.name} has no columns {sorted(unknown)}")
    _insert_of(table).run(conn, row)


@functools.cache
def _insert_of(table: sa.Table) -> Prepared:
    return Prepared(table.insert())
