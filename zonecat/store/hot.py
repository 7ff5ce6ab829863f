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
# The task, read only if its zone is the organization's: one statement where a poll made two.
_TASK_IN_ZONE = _select_all(
    tasks, "zone_id = ? AND id = ? AND EXISTS (SELECT 1 FROM zones WHERE organization_id = ? AND zones.id = ?)"
)
_TASK_EXISTS = "SELECT 1 AS found FROM tasks WHERE id = ?"
_STEP_OUTCOMES = (
    "SELECT local_name, entity_type, action, href FROM task_events "
    "WHERE task_id = ? AND kind = 'step_done' AND seq <= ? ORDER BY seq"
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


def task_in_zone(
    reader: DirectReader, organization_id: str, zone_id: str, task_id: str
) -> tuple[Row, tuple[Any, ...]] | None:
    """``tasks.get_task`` and the zone's check in one statement (None if either is missing), and the row's key: every
    stored value, hashable. Two reads with equal keys read the same row, and so the same step events (they are
    only ever added, each numbered by the row's ``event_seq``, and deleted only with the task; see
    ``step_outcomes``)."""
    row = reader.one(_TASK_IN_ZONE, (zone_id, task_id, organization_id, zone_id))
    if row is None:
        return None
    key = tuple(row.values())  # on SQLite every value is a str, an int or None
    if not reader.sqlite:
        key = tuple(json.dumps(value) if isinstance(value, list | dict) else value for value in key)
    row["warnings"] = _json(row["warnings"], reader.sqlite)
    return row, key


def step_outcomes(reader: DirectReader, task_id: str, through_seq: int) -> list[Row]:
    """The task's step outcomes among its events numbered up to ``through_seq``: with the ``event_seq`` of a task
    row read before, exactly the events that row had, whether or not both reads share a snapshot, provided the task
    still exists (``task_exists`` after this read): events are only ever added, each with the counter's next
    number, and deleted only with their task."""
    return reader.all(_STEP_OUTCOMES, (task_id, through_seq))


def task_exists(reader: DirectReader, task_id: str) -> bool:
    return reader.one(_TASK_EXISTS, (task_id,)) is not None
