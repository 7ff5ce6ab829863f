"""Installs and the idempotency records of the requests that created or deleted them."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from zonecat.domain import idempotency
from zonecat.domain.paging import PageRequest
from zonecat.store.paging import Page, fetch_page
from zonecat.store.prepared import Answer, Prepared
from zonecat.store.schema import idempotency_keys, insert_row, installs
from zonecat.store.secrets import sealed_columns, unseal

Row = dict[str, Any]


def insert_install(conn: sa.Connection, row: Row) -> None:
    insert_row(conn, installs, row)


# An install with its write-only inputs still sealed (read as the JSON they are stored as): what every read but the
# create task's own gives. They are opened only by the task that uses them (``unseal_secret_inputs``), where a key
# that cannot open them fails that one task. Opened by a claim they would fail the claim, and the queue behind it;
# opened by the API's reads (which never return them), the install could not even be read, listed or deleted.
SEALED_COLUMNS = sealed_columns(installs, "secret_inputs")
_BY_ID = Prepared(sa.select(installs).where(installs.c.id == sa.bindparam("install_id")))
_SEALED_BY_ID_STATEMENT = sa.select(*SEALED_COLUMNS).where(installs.c.id == sa.bindparam("install_id"))
_SEALED_BY_ID = Prepared(_SEALED_BY_ID_STATEMENT)
_IN_ZONE = Prepared(_SEALED_BY_ID_STATEMENT.where(installs.c.zone_id == sa.bindparam("zone_id")))


def get_install(conn: sa.Connection, zone_id: str, install_id: str) -> Row | None:
    """The zone's install, write-only inputs sealed (see ``SEALED_COLUMNS``)."""
    return get_install_later(conn, zone_id, install_id).get()


def get_install_later(conn: sa.Connection, zone_id: str, install_id: str) -> Answer[Row | None]:
    """``get_install``, read when asked for (see ``prepared.answered_together``)."""
    return _IN_ZONE.first_later(conn, {"zone_id": zone_id, "install_id": install_id})


def install_by_id(conn: sa.Connection, install_id: str) -> Row | None:
    return _BY_ID.first(conn, {"install_id": install_id})


def sealed_install_by_id(conn: sa.Connection, install_id: str) -> Row | None:
    """``install_by_id`` with its ``secret_inputs`` as stored (``SEALED_COLUMNS``)."""
    return _SEALED_BY_ID.first(conn, {"install_id": install_id})


def unseal_secret_inputs(dialect: sa.Dialect, stored: Any) -> Any:
    """The write-only inputs of an install read sealed, as ``install_by_id`` gives them (raises the secret box's
    errors: a missing or different key, an unreadable value)."""
    return unseal(installs.c.secret_inputs, dialect, stored)


def list_installs(conn: sa.Connection, zone_id: str, request: PageRequest, status: str | None = None) -> Page:
    """A page of the zone's installs, write-only inputs sealed (see ``SEALED_COLUMNS``)."""
    where = [installs.c.zone_id == zone_id]
    if status is not None:
        where.append(installs.c.status == status)
    return fetch_page(conn, installs, where, request, SEALED_COLUMNS)


def move_install(
    conn: sa.Connection, install_id: str, expected: tuple[str, ...], status: str, now: int, **changes: Any
) -> bool:
    """Guarded status write: only while the install is in one of ``expected``. False if it was not."""
    return move_install_later(conn, install_id, expected, status, now, **changes).get()


def move_install_later(
    conn: sa.Connection, install_id: str, expected: tuple[str, ...], status: str, now: int, **changes: Any
) -> Answer[bool]:
    """``move_install``, whose answer is read when asked for (see ``prepared.answered_together``)."""
    params = {f"set_{key}": value for key, value in changes.items()}
    params.update({f"expected_{index}": value for index, value in enumerate(expected)})
    params.update({"install_id": install_id, "new_status": status, "at": now})
    statement = _move_statement(len(expected), tuple(sorted(changes)))
    return statement.rowcount_later(conn, params).then(lambda count: count == 1)


@functools.cache
def _move_statement(expected: int, keys: tuple[str, ...]) -> Prepared:
    """The guarded UPDATE of ``move_install`` for one shape of call, built once (every task ends with one)."""
    unknown = set(keys) - set(installs.c.keys())
    if unknown:
        raise TypeError(f"installs has no columns {sorted(unknown)}")
    return Prepared(
        installs.update()
        .where(
            installs.c.id == sa.bindparam("install_id"),
            installs.c.status.in_([sa.bindparam(f"expected_{index}") for index in range(expected)]),
        )
        .values(
            status=sa.bindparam("new_status"),
            updated_at_ms=sa.bindparam("at"),
            **{key: sa.bindparam(f"set_{key}", type_=installs.c[key].type) for key in keys},
        )
    )


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
    """Record a key; an expired record under the same key is replaced. A live record is never replaced: a
    concurrent request with the same key that committed first makes this insert fail on the key, and the caller
    answers with that request's task. (Both statements are ``Prepared``: the install request sends them with its
    inserts, ``sent_together``.)"""
    params = {name: row[name] for name in ("organization_id", "key", "method", "path")}
    _FORGET_EXPIRED_KEY.run(conn, {**params, "expired_before": row["created_at_ms"] - idempotency.WINDOW_MS})
    insert_row(conn, idempotency_keys, row)


_FORGET_EXPIRED_KEY = Prepared(
    idempotency_keys.delete().where(
        idempotency_keys.c.organization_id == sa.bindparam("organization_id"),
        idempotency_keys.c.key == sa.bindparam("key"),
        idempotency_keys.c.method == sa.bindparam("method"),
        idempotency_keys.c.path == sa.bindparam("path"),
        idempotency_keys.c.created_at_ms < sa.bindparam("expired_before"),
    )
)


def forget_idempotency_before(conn: sa.Connection, cutoff: int) -> int:
    return conn.execute(idempotency_keys.delete().where(idempotency_keys.c.created_at_ms < cutoff)).rowcount
