"""Zones and API tokens."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from zonecat.domain.paging import PageRequest
from zonecat.store.paging import Page, fetch_page
from zonecat.store.prepared import Answer, Prepared
from zonecat.store.schema import (
    entities,
    entity_uses,
    idempotency_keys,
    insert_row,
    installs,
    package_versions,
    packages,
    task_events,
    tasks,
    tokens,
    zones,
)

Row = dict[str, Any]


def insert_zone(conn: sa.Connection, row: Row) -> None:
    insert_row(conn, zones, row)


# Built once: every request on a zone's path reads its zone (building the statement cost more than running it).
_GET_ZONE = Prepared(
    sa.select(zones).where(
        zones.c.organization_id == sa.bindparam("organization_id"), zones.c.id == sa.bindparam("zone_id")
    )
)


# A zone's advisory lock on PostgreSQL (one bigint key per zone; two zones that share a key only wait on each other).
def _zone_lock_key(zone_id: sa.ColumnElement[str]) -> sa.ColumnElement[int]:
    return sa.func.hashtextextended(sa.literal("zonecat zone ", sa.String) + zone_id, 0)


_SHARE_ZONE = Prepared(
    {
        "postgresql": sa.select(
            sa.func.pg_advisory_xact_lock_shared(_zone_lock_key(sa.bindparam("zone_id", type_=sa.String)))
        )
    }
)


def hold_zone(conn: sa.Connection, zone_id: str) -> None:
    """Keep the zone from being deleted until this transaction ends. A write that adds rows to a zone (an install,
    a package, an entity …) calls it before it reads the zone, and refuses to go on when it is not there: a zone
    deleted meanwhile is then seen gone, and its deletion waits for the write (``lock_zone_exclusively``).

    On PostgreSQL a shared advisory lock, taken in a statement of its own: under READ COMMITTED each statement reads
    what was committed when it began, so the zone read that follows sees a deletion that held the lock. Inside
    ``answered_together`` it is only queued, and goes out in the same round trip as the reads. On SQLite nothing:
    the write transaction already holds the database's one write lock, which a zone's deletion takes too."""
    if conn.dialect.name == "postgresql":
        _SHARE_ZONE.run(conn, {"zone_id": zone_id})


def lock_zone_exclusively(conn: sa.Connection, zone_id: str) -> None:
    """Wait for every write that holds the zone (``hold_zone``) to end, and keep new ones waiting until this
    transaction ends: what it then reads of the zone is final (a zone's or a package's deletion counts the installs
    that would forbid it). On SQLite nothing (see ``hold_zone``)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_zone_lock_key(sa.literal(zone_id, sa.String)))))


def get_zone(conn: sa.Connection, organization_id: str, zone_id: str) -> Row | None:
    return _GET_ZONE.first(conn, {"organization_id": organization_id, "zone_id": zone_id})


def get_zone_later(conn: sa.Connection, organization_id: str, zone_id: str) -> Answer[Row | None]:
    """``get_zone``, read when asked for (see ``prepared.answered_together``)."""
    return _GET_ZONE.first_later(conn, {"organization_id": organization_id, "zone_id": zone_id})


def zone_by_name(conn: sa.Connection, organization_id: str, name: str) -> Row | None:
    query = sa.select(zones).where(zones.c.organization_id == organization_id, zones.c.name == name)
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def zone_ids_matching(conn: sa.Connection, ref: str) -> list[str]:
    """The zone whose id is ``ref``, else the zones named ``ref`` (one per organization at most), in any
    organization: for tools that read the database itself (``zonecat check``)."""
    by_id = conn.execute(sa.select(zones.c.id).where(zones.c.id == ref)).scalars().all()
    if by_id:
        return [str(found) for found in by_id]
    by_name = sa.select(zones.c.id).where(zones.c.name == ref).order_by(zones.c.id)
    return [str(found) for found in conn.execute(by_name).scalars()]


def list_zones(conn: sa.Connection, organization_id: str, visible: list[str] | None, request: PageRequest) -> Page:
    where: list[sa.ColumnElement[bool]] = [zones.c.organization_id == organization_id]
    if visible is not None:
        where.append(zones.c.id.in_(visible))
    return fetch_page(conn, zones, where, request)


def update_zone(conn: sa.Connection, zone_id: str, changes: Row) -> None:
    conn.execute(zones.update().where(zones.c.id == zone_id).values(**changes))


def delete_zone(conn: sa.Connection, zone_id: str) -> None:
    """Delete the zone and everything in it. The caller has checked that every install is deleted."""
    zone_tasks = sa.select(tasks.c.id).where(tasks.c.zone_id == zone_id)
    zone_packages = sa.select(packages.c.id).where(packages.c.zone_key == zone_id)
    conn.execute(task_events.delete().where(task_events.c.task_id.in_(zone_tasks)))
    conn.execute(tasks.delete().where(tasks.c.zone_id == zone_id))
    conn.execute(entity_uses.delete().where(entity_uses.c.zone_id == zone_id))
    conn.execute(entities.delete().where(entities.c.zone_id == zone_id))
    conn.execute(installs.delete().where(installs.c.zone_id == zone_id))
    conn.execute(package_versions.delete().where(package_versions.c.package_id.in_(zone_packages)))
    conn.execute(packages.delete().where(packages.c.zone_key == zone_id))
    conn.execute(idempotency_keys.delete().where(idempotency_keys.c.path.like(f"/zones/{zone_id}/%")))
    conn.execute(zones.delete().where(zones.c.id == zone_id))


def live_install_count(conn: sa.Connection, zone_id: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(installs)
        .where(installs.c.zone_id == zone_id, installs.c.status != "deleted")
    )
    return int(conn.execute(query).scalar_one())


def insert_token(conn: sa.Connection, row: Row) -> None:
    insert_row(conn, tokens, row)


def token_by_hash(conn: sa.Connection, token_hash: str) -> Row | None:
    found = conn.execute(sa.select(tokens).where(tokens.c.token_hash == token_hash)).first()
    return dict(found._mapping) if found else None


def get_token(conn: sa.Connection, organization_id: str, token_id: str) -> Row | None:
    query = sa.select(tokens).where(tokens.c.organization_id == organization_id, tokens.c.id == token_id)
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def list_tokens(conn: sa.Connection, organization_id: str, request: PageRequest) -> Page:
    where = [tokens.c.organization_id == organization_id, tokens.c.revoked_at_ms.is_(None)]
    return fetch_page(conn, tokens, where, request)


def revoke_token(conn: sa.Connection, token_id: str, now: int) -> bool:
    result = conn.execute(
        tokens.update().where(tokens.c.id == token_id, tokens.c.revoked_at_ms.is_(None)).values(revoked_at_ms=now)
    )
    return result.rowcount == 1
