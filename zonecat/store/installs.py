"""Installs and the idempotency records of the requests that created or deleted them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from zonecat.domain.paging import PageRequest
from zonecat.store.paging import Page, fetch_page
from zonecat.store.schema import idempotency_keys, installs

Row = dict[str, Any]


def insert_install(conn: sa.Connection, row: Row) -> None:
    conn.execute(installs.insert(), row)


def get_install(conn: sa.Connection, zone_id: str, install_id: str) -> Row | None:
    query = sa.select(installs).where(installs.c.zone_id == zone_id, installs.c.id == install_id)
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def install_by_id(conn: sa.Connection, install_id: str) -> Row | None:
    found = conn.execute(sa.select(installs).where(installs.c.id == install_id)).first()
    return dict(found._mapping) if found else None


def list_installs(conn: sa.Connection, zone_id: str, request: PageRequest, status: str | None = None) -> Page:
    where = [installs.c.zone_id == zone_id]
    if status is not None:
        where.append(installs.c.status == status)
    return fetch_page(conn, installs, where, request)


def move_install(
    conn: sa.Connection, install_id: str, expected: tuple[str, ...], status: str, now: int, **changes: Any
) -> bool:
    """Guarded status write: only while the install is in one of ``expected``. False if it was not."""
    result = conn.execute(
        installs.update()
        .where(installs.c.id == install_id, installs.c.status.in_(expected))
        .values(status=status, updated_at_ms=now, **changes)
    )
    return result.rowcount == 1


def find_idempotency(
    conn: sa.Connection, organization_id: str, key: str, method: str, path: str, since: int
) -> Row | None:
    query = sa.select(idempotency_keys).where(
        idempotency_keys.c.organization_id == organization_id,
        idempotency_keys.c.key == key,
        idempotency_keys.c.method == method,
        idempotency_keys.c.path == path,
        idempotency_keys.c.created_at_ms >= since,
    )
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def remember_idempotency(conn: sa.Connection, row: Row) -> None:
    """Record a key; an expired record under the same key is replaced."""
    conn.execute(
        idempotency_keys.delete().where(
            idempotency_keys.c.organization_id == row["organization_id"],
            idempotency_keys.c.key == row["key"],
            idempotency_keys.c.method == row["method"],
            idempotency_keys.c.path == row["path"],
        )
    )
    conn.execute(idempotency_keys.insert(), row)


def forget_idempotency_before(conn: sa.Connection, cutoff: int) -> int:
    return conn.execute(idempotency_keys.delete().where(idempotency_keys.c.created_at_ms < cutoff)).rowcount
