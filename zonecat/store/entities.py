"""Entities of the zones and the record of which install uses which entity (``entity_uses``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from zonecat.domain.paging import PageRequest
from zonecat.store.paging import Page, fetch_page
from zonecat.store.prepared import Answer, Prepared
from zonecat.store.schema import entities, entity_uses, insert_row, installs
from zonecat.store.secrets import sealed_columns, unseal

Row = dict[str, Any]


# Every read of an entity leaves its write-only attributes sealed (read as the JSON they are stored as): the API
# never returns them, and the views report which are set from the names stored beside the token
# (``secrets.names_set``). They are opened only where a value is needed, a PATCH that keeps one
# (``unseal_secret_attributes``), so a key that cannot open them fails that request, never a read, a list, a
# delete or an uninstall.
SEALED_COLUMNS = sealed_columns(entities, "secret_attributes")


def unseal_secret_attributes(dialect: sa.Dialect, stored: Any) -> Any:
    """The write-only attributes of an entity read sealed (raises the secret box's errors: a missing or different
    key, an unreadable value)."""
    return unseal(entities.c.secret_attributes, dialect, stored)


def insert_entity(conn: sa.Connection, row: Row) -> None:
    """Insert; raises ``sqlalchemy.exc.IntegrityError`` when the natural key is taken."""
    insert_row(conn, entities, row)


def insert_entity_if_absent(conn: sa.Connection, row: Row) -> bool:
    """Insert unless the natural key is taken (then nothing happens): True when this call inserted the row.

    ``ON CONFLICT DO NOTHING`` on both SQLite and PostgreSQL, so a race on the natural key never aborts the
    surrounding transaction and needs no savepoint. Whether a row went in is read from ``RETURNING``, not from
    the row count: SQLAlchemy's psycopg dialect reports -1 as the row count of every INSERT.
    """
    unknown = set(row) - set(entities.c.keys())
    if unknown:
        raise TypeError(f"entities has no columns {sorted(unknown)}")
    return _INSERT_IF_ABSENT.first(conn, row) is not None


_NATURAL_KEY = ["zone_id", "type", "identifier"]
_PG_INSERT_IF_ABSENT = (
    postgresql.insert(entities).on_conflict_do_nothing(index_elements=_NATURAL_KEY).returning(entities.c.id)
)
# Built once per dialect, and run through the driver on every entity step.
_INSERT_IF_ABSENT = Prepared(
    {
        "postgresql": _PG_INSERT_IF_ABSENT,
        "sqlite": sqlite.insert(entities).on_conflict_do_nothing(index_elements=_NATURAL_KEY).returning(entities.c.id),
    }
)


_USE_COLUMNS = ("install_id", "local_name", "zone_id", "task_id", "position", "created_at_ms")


def _created_with_use() -> sa.Insert:
    """PostgreSQL: the entity insert of ``_INSERT_IF_ABSENT`` as a CTE, and the use inserted from its RETURNING."""
    created = _PG_INSERT_IF_ABSENT.values(
        {column.name: sa.bindparam(column.name, type_=column.type) for column in entities.c}
    ).cte("created")
    values: dict[str, sa.ColumnElement[Any]] = {
        name: sa.bindparam(f"use_{name}", type_=entity_uses.c[name].type) for name in _USE_COLUMNS
    }
    values.update({"entity_id": created.c.id, "role": sa.literal("created", entity_uses.c.role.type)})
    return (
        entity_uses.insert().from_select(list(values), sa.select(*values.values())).returning(entity_uses.c.entity_id)
    )


_INSERT_WITH_USE = Prepared(_created_with_use())


def insert_entity_with_use(conn: sa.Connection, row: Row, use: Row) -> bool:
    """``insert_entity_if_absent`` and, when the entity went in, the install's use of it with the role "created"
    (``use`` holds the other columns of entity_uses): True when both went in; nothing is written otherwise.

    On PostgreSQL this is one statement, the use inserted from the entity insert's RETURNING: one round trip per
    created entity fewer. On SQLite, where a statement costs no round trip, it is the two statements."""
    return insert_entity_with_use_later(conn, row, use).get()


def insert_entity_with_use_later(conn: sa.Connection, row: Row, use: Row) -> Answer[bool]:
    """``insert_entity_with_use``, whose answer is read when asked for: inside ``prepared.answered_together`` on
    PostgreSQL the inserts of several entities go to the server in one round trip."""
    if set(use) != set(_USE_COLUMNS):
        raise TypeError(f"a use needs exactly the columns {sorted(_USE_COLUMNS)}, got {sorted(use)}")
    if conn.dialect.name != "postgresql":
        if not insert_entity_if_absent(conn, row):
            return Answer.known(False)
        insert_use(conn, {**use, "entity_id": row["id"], "role": "created"})
        return Answer.known(True)
    if set(row) != set(entities.c.keys()):
        raise TypeError(f"an entity needs every column of entities, got {sorted(row)}")
    params = {**row, **{f"use_{name}": value for name, value in use.items()}}
    return _INSERT_WITH_USE.first_later(conn, params).then(lambda found: found is not None)


# The statements every delete step runs, built once (building one cost more than running it on SQLite).
_REMAINING_USES = Prepared(
    sa.select(entity_uses.c.install_id).where(entity_uses.c.entity_id == sa.bindparam("entity_id"))
)
_GET_ENTITY_STATEMENT = sa.select(*SEALED_COLUMNS).where(
    entities.c.zone_id == sa.bindparam("zone_id"), entities.c.id == sa.bindparam("entity_id")
)
_GET_ENTITY = Prepared(_GET_ENTITY_STATEMENT)
_GET_ENTITY_LOCKED = Prepared(_GET_ENTITY_STATEMENT.with_for_update())
_DELETE_ENTITY = Prepared(entities.delete().where(entities.c.id == sa.bindparam("entity_id")))
_DELETE_USE = Prepared(
    entity_uses.delete().where(
        entity_uses.c.install_id == sa.bindparam("install_id"), entity_uses.c.local_name == sa.bindparam("local_name")
    )
)


def remaining_uses(conn: sa.Connection, entity_id: str) -> list[str]:
    """Install ids that still use the entity (an install may use it under several local names)."""
    return sorted({r["install_id"] for r in _REMAINING_USES.rows(conn, {"entity_id": entity_id})})


def get_entity(conn: sa.Connection, zone_id: str, entity_id: str, lock: bool = False) -> Row | None:
    query = _GET_ENTITY_LOCKED if lock else _GET_ENTITY
    return query.first(conn, {"zone_id": zone_id, "entity_id": entity_id})


def by_natural_key(
    conn: sa.Connection, zone_id: str, entity_type: str, identifier: str, lock: bool = False
) -> Row | None:
    query = _BY_NATURAL_KEY_LOCKED if lock else _BY_NATURAL_KEY
    return query.first(conn, {"zone_id": zone_id, "type": entity_type, "identifier": identifier})


_BY_NATURAL_KEY_STATEMENT = sa.select(*SEALED_COLUMNS).where(
    entities.c.zone_id == sa.bindparam("zone_id"),
    entities.c.type == sa.bindparam("type"),
    entities.c.identifier == sa.bindparam("identifier"),
)
_BY_NATURAL_KEY = Prepared(_BY_NATURAL_KEY_STATEMENT)
_BY_NATURAL_KEY_LOCKED = Prepared(_BY_NATURAL_KEY_STATEMENT.with_for_update())


def list_entities(
    conn: sa.Connection,
    zone_id: str,
    request: PageRequest,
    entity_type: str | None = None,
    install_id: str | None = None,
    identifier: str | None = None,
) -> Page:
    where = [entities.c.zone_id == zone_id]
    if entity_type is not None:
        where.append(entities.c.type == entity_type)
    if identifier is not None:
        where.append(entities.c.identifier == identifier)
    if install_id is not None:
        used = sa.select(entity_uses.c.entity_id).where(entity_uses.c.install_id == install_id)
        where.append(entities.c.id.in_(used))
    return fetch_page(conn, entities, where, request, SEALED_COLUMNS)


def update_entity(conn: sa.Connection, entity_id: str, changes: Row) -> None:
    conn.execute(entities.update().where(entities.c.id == entity_id).values(**changes))


def delete_entity(conn: sa.Connection, entity_id: str) -> None:
    _DELETE_ENTITY.run(conn, {"entity_id": entity_id})


def insert_use(conn: sa.Connection, row: Row) -> None:
    insert_row(conn, entity_uses, row)


_USE_OF = sa.select(entity_uses).where(
    entity_uses.c.install_id == sa.bindparam("install_id"), entity_uses.c.local_name == sa.bindparam("local_name")
)
_USES_OF_INSTALL = (
    sa.select(entity_uses)
    .where(entity_uses.c.install_id == sa.bindparam("install_id"))
    .order_by(entity_uses.c.position, entity_uses.c.local_name)
)


def use_of(conn: sa.Connection, install_id: str, local_name: str) -> Row | None:
    found = conn.execute(_USE_OF, {"install_id": install_id, "local_name": local_name}).first()
    return dict(found._mapping) if found else None


def uses_of_install(conn: sa.Connection, install_id: str) -> list[Row]:
    """Every use row of the install, in provisioning order."""
    return [dict(r._mapping) for r in conn.execute(_USES_OF_INSTALL, {"install_id": install_id})]


def uses_of_entity(conn: sa.Connection, entity_id: str) -> list[Row]:
    query = sa.select(entity_uses).where(entity_uses.c.entity_id == entity_id).order_by(entity_uses.c.install_id)
    return [dict(r._mapping) for r in conn.execute(query)]


def uses_of_entities(conn: sa.Connection, entity_ids: list[str]) -> dict[str, list[Row]]:
    if not entity_ids:
        return {}
    query = sa.select(entity_uses).where(entity_uses.c.entity_id.in_(entity_ids)).order_by(entity_uses.c.install_id)
    grouped: dict[str, list[Row]] = {}
    for row in conn.execute(query):
        grouped.setdefault(row.entity_id, []).append(dict(row._mapping))
    return grouped


def delete_use(conn: sa.Connection, install_id: str, local_name: str) -> None:
    _DELETE_USE.run(conn, {"install_id": install_id, "local_name": local_name})


_BY_IDS = sa.select(*SEALED_COLUMNS).where(entities.c.id.in_(sa.bindparam("ids", expanding=True)))
_STAYING_USERS = Prepared(
    sa.select(entity_uses.c.entity_id, entity_uses.c.install_id)
    .select_from(entity_uses.outerjoin(installs, installs.c.id == entity_uses.c.install_id))
    .where(
        entity_uses.c.entity_id.in_(
            sa.select(entity_uses.c.entity_id).where(entity_uses.c.install_id == sa.bindparam("install_id"))
        ),
        entity_uses.c.install_id != sa.bindparam("install_id"),
        sa.or_(installs.c.status.is_(None), installs.c.status != "deleting"),
    )
    .order_by(entity_uses.c.entity_id, entity_uses.c.install_id)
)


def staying_users(conn: sa.Connection, install_id: str) -> dict[str, list[str]]:
    """For each entity the install uses, the other installs that use it and are not being deleted themselves
    (sorted), in one query; entities without such users are left out."""
    found: dict[str, list[str]] = {}
    for row in _STAYING_USERS.rows(conn, {"install_id": install_id}):
        users = found.setdefault(row["entity_id"], [])
        if not users or users[-1] != row["install_id"]:  # one install may use it under several local names
            users.append(row["install_id"])
    return found


def entities_by_ids(conn: sa.Connection, ids: list[str]) -> dict[str, Row]:
    if not ids:
        return {}
    return {r.id: dict(r._mapping) for r in conn.execute(_BY_IDS, {"ids": list(ids)})}
