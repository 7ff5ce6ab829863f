"""The hot reads in driver SQL (``zonecat.store.direct``): the bearer token of every request, and the task clients
poll. Each returns exactly what its SQLAlchemy twin in ``zones`` / ``tasks`` returns (the store suite checks it on
every database), so the API treats both the same."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from zonecat.store.direct import DirectReader, Row
from zonecat.store.schema import tasks, tokens, zones


def _select_all(table: sa.Table, where: str) -> str:
    # Every column, named from the table's metadata: the rows match what ``sa.select(table)`` returns.
    return f"SELECT {', '.join(table.c.keys())} FROM {table.name} WHERE {where}"


_TOKEN = _select_all(tokens, "token_hash = ?")
_ZONE = _select_all(zones, "organization_id = ? AND id = ?")
_TASK = _select_all(tasks, "zone_id = ? AND id = ?")
_STEP_OUTCOMES = (
    "SELECT local_name, entity_type, action, href FROM task_events "
    "WHERE task_id = ? AND kind = 'step_done' ORDER BY seq"
)


def _json(value: Any, sqlite: bool) -> Any:
    # SQLite keeps JSON columns as text; psycopg decodes json columns itself.
    return json.loads(value) if sqlite and isinstance(value, str) else value


def token_by_hash(reader: DirectReader, token_hash: str) -> Row | None:
    row = reader.one(_TOKEN, (token_hash,))
    if row is not None:
        row["zones"] = _json(row["zones"], reader.sqlite)
        row["read_only"] = bool(row["read_only"])
        row["admin"] = bool(row["admin"])
    return row


def get_zone(reader: DirectReader, organization_id: str, zone_id: str) -> Row | None:
    return reader.one(_ZONE, (organization_id, zone_id))


def get_task(reader: DirectReader, zone_id: str, task_id: str) -> Row | None:
    row = reader.one(_TASK, (zone_id, task_id))
    if row is not None:
        row["warnings"] = _json(row["warnings"], reader.sqlite)
    return row


def step_outcomes(reader: DirectReader, task_id: str) -> list[Row]:
    return reader.all(_STEP_OUTCOMES, (task_id,))
