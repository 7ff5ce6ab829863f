"""The hot reads in driver SQL (``zonecat.store.direct``): the bearer token of every request, and the task clients
poll. Each returns exactly what its SQLAlchemy twin in ``zones`` / ``tasks`` returns (the store suite checks it on
every database), so the API treats both the same."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import sqlalchemy as sa

from zonecat.store.direct import DirectReader, Row
from zonecat.store.schema import tasks, tokens, zones


def _select_all(table: sa.Table, where: str) -> str:
    # Every column, named from the table's metadata: the rows match what ``sa.select(table)`` returns.
    return f"SELECT {', '.join(table.c.keys())} FROM {table.name} WHERE {where}"


_TOKEN = _select_all(tokens, "token_hash = ?")
_ZONE = _select_all(zones, "organization_id = ? AND id = ?")
# A poll's one statement: the token, and the task if it is in that zone and the zone is the token's organization's
# (a poll made three reads before, then two).
_TOKEN_COLUMNS = tuple(tokens.c.keys())
_TASK_COLUMNS = tuple(tasks.c.keys())
_TASK_ID = _TASK_COLUMNS.index("id")
_TOKEN_AND_TASK = (
    f"SELECT {', '.join(f'tokens.{name}' for name in _TOKEN_COLUMNS)}, "
    f"{', '.join(f'tasks.{name}' for name in _TASK_COLUMNS)} "
    "FROM tokens LEFT JOIN tasks ON tasks.zone_id = ? AND tasks.id = ? "
    "AND EXISTS (SELECT 1 FROM zones "
    "WHERE zones.organization_id = tokens.organization_id AND zones.id = tasks.zone_id) "
    "WHERE tokens.token_hash = ?"
)
_TASK_EXISTS = "SELECT 1 AS found FROM tasks WHERE id = ?"
_STEP_OUTCOMES = (
    "SELECT local_name, entity_type, action, href FROM task_events "
    "WHERE task_id = ? AND kind = 'step_done' AND seq <= ? ORDER BY seq"
)


def _json(value: Any, sqlite: bool) -> Any:
    # SQLite keeps JSON columns as text; psycopg decodes json columns itself.
    return json.loads(value) if sqlite and isinstance(value, str) else value


def _token(row: Row, sqlite: bool) -> Row:
    row["zones"] = _json(row["zones"], sqlite)
    row["read_only"] = bool(row["read_only"])
    row["admin"] = bool(row["admin"])
    return row


def token_by_hash(reader: DirectReader, token_hash: str) -> Row | None:
    row = reader.one(_TOKEN, (token_hash,))
    return None if row is None else _token(row, reader.sqlite)


def get_zone(reader: DirectReader, organization_id: str, zone_id: str) -> Row | None:
    return reader.one(_ZONE, (organization_id, zone_id))


class Poll(NamedTuple):
    """What a task poll reads: the token (None if unknown), and the task with its key (None if the task is missing,
    in another zone, or the zone is not the token's organization's)."""

    token: Row | None
    task: Row | None
    key: tuple[Any, ...] | None


def token_and_task(reader: DirectReader, token_hash: str, zone_id: str, task_id: str) -> Poll:
    """``token_by_hash`` and ``tasks.get_task`` with its zone's check, in one statement; and the task row's key: every
    stored value, hashable. Two reads with equal keys read the same row, and so the same step events (they are only
    ever added, each numbered by the row's ``event_seq``, and deleted only with the task; see ``step_outcomes``)."""
    found = reader.values(_TOKEN_AND_TASK, (zone_id, task_id, token_hash))
    if found is None:
        return Poll(None, None, None)
    split = len(_TOKEN_COLUMNS)
    token = _token(dict(zip(_TOKEN_COLUMNS, found[:split], strict=True)), reader.sqlite)
    key = found[split:]
    if key[_TASK_ID] is None:  # no task joined
        return Poll(token, None, None)
    task = dict(zip(_TASK_COLUMNS, key, strict=True))
    if not reader.sqlite:  # on SQLite every value is a str, an int or None; psycopg decodes JSON columns
        key = tuple(json.dumps(value) if isinstance(value, list | dict) else value for value in key)
    task["warnings"] = _json(task["warnings"], reader.sqlite)
    return Poll(token, task, key)


def step_outcomes(reader: DirectReader, task_id: str, through_seq: int) -> list[Row]:
    """The task's step outcomes among its events numbered up to ``through_seq``: with the ``event_seq`` of a task
    row read before, exactly the events that row had, whether or not both reads share a snapshot, provided the task
    still exists (``task_exists`` after this read): events are only ever added, each with the counter's next
    number, and deleted only with their task."""
    return reader.all(_STEP_OUTCOMES, (task_id, through_seq))


def task_exists(reader: DirectReader, task_id: str) -> bool:
    return reader.one(_TASK_EXISTS, (task_id,)) is not None
