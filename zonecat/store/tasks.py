"""Catalog tasks (the queue), their events and their leases.

Every status write is guarded by the status it expects and, once claimed, by the lease owner, so a worker that
lost its lease can never overwrite what its successor did.
"""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from zonecat.domain import workers
from zonecat.domain.paging import PageRequest
from zonecat.store import installs as install_store
from zonecat.store.paging import Page, fetch_page
from zonecat.store.prepared import Answer, Prepared
from zonecat.store.schema import LEASED, PENDING, UNFINISHED, insert_row, installs, task_events, tasks

Row = dict[str, Any]


def insert_task(conn: sa.Connection, row: Row, first_event: Row | None = None) -> None:
    """Insert a task; with ``first_event`` (its kind and event columns), that event too, as seq 1."""
    if first_event is None:
        insert_row(conn, tasks, row)
        return
    insert_row(conn, tasks, {**row, "event_seq": 1})
    fields = {key: value for key, value in first_event.items() if key != "kind"}
    insert_event(conn, row["id"], 1, row["created_at_ms"], first_event["kind"], **fields)


# Built once: task reads run on every request about a task or an install.
_TASK_BY_ID = sa.select(tasks).where(tasks.c.id == sa.bindparam("task_id"))
_TASK_IN_ZONE = _TASK_BY_ID.where(tasks.c.zone_id == sa.bindparam("zone_id"))
# The condition of the one-unfinished-task-per-install index, literally (``UNFINISHED``): SQLite then reads that
# index, and the statement has no expanding IN, so that it can be a ``Prepared`` one.
_UNFINISHED_OF = Prepared(sa.select(tasks).where(tasks.c.install_id == sa.bindparam("install_id"), UNFINISHED))


def get_task(conn: sa.Connection, zone_id: str, task_id: str) -> Row | None:
    found = conn.execute(_TASK_IN_ZONE, {"zone_id": zone_id, "task_id": task_id}).first()
    return dict(found._mapping) if found else None


def task_by_id(conn: sa.Connection, task_id: str) -> Row | None:
    found = conn.execute(_TASK_BY_ID, {"task_id": task_id}).first()
    return dict(found._mapping) if found else None


def unfinished_task_of(conn: sa.Connection, install_id: str) -> Row | None:
    return unfinished_task_of_later(conn, install_id).get()


def unfinished_task_of_later(conn: sa.Connection, install_id: str) -> Answer[Row | None]:
    """``unfinished_task_of``, read when asked for (see ``prepared.answered_together``)."""
    return _UNFINISHED_OF.first_later(conn, {"install_id": install_id})


def last_task_of(conn: sa.Connection, install_id: str, operation: str) -> Row | None:
    query = (
        sa.select(tasks)
        .where(tasks.c.install_id == install_id, tasks.c.operation == operation)
        .order_by(tasks.c.id.desc())
        .limit(1)
    )
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def list_tasks(
    conn: sa.Connection,
    zone_id: str,
    request: PageRequest,
    install_id: str | None = None,
    status: str | None = None,
    operation: str | None = None,
) -> Page:
    where = [tasks.c.zone_id == zone_id]
    if install_id is not None:
        where.append(tasks.c.install_id == install_id)
    if status is not None:
        where.append(tasks.c.status == status)
    if operation is not None:
        where.append(tasks.c.operation == operation)
    return fetch_page(conn, tasks, where, request)


# The oldest due task: first a running task whose lease ended (its worker died or handed it back: work already
# begun, resumed before new work starts), else the pending task due first. Each half reads its own partial index
# in claim order (``ix_tasks_leased``, ``ix_tasks_pending``), one entry unless rows are locked by other claimers.
# The conditions repeat the indexes' own literally (``LEASED``, ``PENDING``) so that SQLite uses them too.
_CANDIDATE_COLUMNS = (tasks.c.id, tasks.c.status, tasks.c.locked_by, tasks.c.locked_until_ms)
_LEASE_ENDED = (
    sa.select(*_CANDIDATE_COLUMNS)
    .where(LEASED, tasks.c.locked_until_ms < sa.bindparam("now"))
    .order_by(tasks.c.locked_until_ms)
    .limit(1)
    .with_for_update(skip_locked=True)
    .subquery("lease_ended")
)
_PENDING_DUE = (
    sa.select(*_CANDIDATE_COLUMNS)
    .where(PENDING, tasks.c.run_after_ms <= sa.bindparam("now"))
    .order_by(tasks.c.run_after_ms, tasks.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
    .subquery("pending_due")
)
# PostgreSQL reads the second half only when the first found nothing (an Append under LIMIT 1), so one row at
# most is locked. Built once, with bound parameters: every claim runs it.
_CANDIDATES = sa.union_all(sa.select(_LEASE_ENDED), sa.select(_PENDING_DUE)).limit(1)
# The first entry of each queue index: when the next pending task is due, and when the first lease ends.
_FIRST_PENDING = sa.select(sa.func.min(tasks.c.run_after_ms)).where(PENDING).scalar_subquery()
_FIRST_LEASE_END = sa.select(sa.func.min(tasks.c.locked_until_ms)).where(LEASED).scalar_subquery()
_CANDIDATE = Prepared(_CANDIDATES)


def _take(lease_was_null: bool, reserve_event: bool) -> Prepared:
    lease_guard = (
        tasks.c.locked_until_ms.is_(None) if lease_was_null else tasks.c.locked_until_ms == sa.bindparam("lease_was")
    )
    values: dict[str, Any] = {
        "status": "running",
        "locked_by": sa.bindparam("worker"),
        "locked_until_ms": sa.bindparam("lease_until"),
        "attempts": tasks.c.attempts + 1,
        "updated_at_ms": sa.bindparam("at"),
    }
    if reserve_event:
        values["event_seq"] = tasks.c.event_seq + 1
    return Prepared(
        tasks.update()
        .where(tasks.c.id == sa.bindparam("task_id"), tasks.c.status == sa.bindparam("status_was"), lease_guard)
        .values(**values)
        .returning(*tasks.c)
    )


_TAKE = {(null, reserve): _take(null, reserve) for null in (True, False) for reserve in (True, False)}


def claim(conn: sa.Connection, worker_id: str, now: int, lease_ms: int, reserve_event: bool = False) -> Row | None:
    """Take the oldest due task: pending, or running with an expired lease (its worker died).

    On PostgreSQL the select locks the row it returns and skips rows other workers are claiming
    (``FOR UPDATE SKIP LOCKED``); on SQLite the surrounding ``BEGIN IMMEDIATE`` serialises claimers. The update is
    guarded by the status *and* the lease that were read, so even without the row lock one task could never be
    handed to two workers (a re-check of ``status = 'running'`` alone would let two claimers take over one
    expired lease). It returns the claimed row itself (``RETURNING``). With ``reserve_event`` it also reserves the
    task's next event number, returned as ``event_seq``, for the caller's ``insert_event``.
    """
    found = _CANDIDATE.first(conn, {"now": now})
    if found is None:
        return None
    params = {
        "task_id": found["id"],
        "status_was": found["status"],
        "lease_was": found["locked_until_ms"],
        "worker": worker_id,
        "lease_until": now + lease_ms,
        "at": now,
    }
    if found["locked_until_ms"] is None:
        del params["lease_was"]
    row = _TAKE[(found["locked_until_ms"] is None, reserve_event)].first(conn, params)
    if row is None:
        return None
    row["previous_status"] = found["status"]
    row["previous_owner"] = found["locked_by"]
    # 0: the previous owner gave the task back (graceful stop); else its lease ran out (it died).
    row["previous_released"] = found["status"] == "running" and found["locked_until_ms"] == 0
    return row


def claim_announced(conn: sa.Connection, worker_id: str, now: int, lease_ms: int) -> Row | None:
    """``claim`` plus the task's "running" event (``workers.claim_message``), atomically; and, for a create task, its
    install with the write-only inputs sealed (``installs.sealed_install_by_id``; None if it is gone, or for a
    delete task) under the key ``"install"``.

    On PostgreSQL both are one statement (``_CLAIM_ANNOUNCED``), so a caller on an autocommit connection
    (``Database.write_statement``) claims in one round trip: an idle worker woken for a task another worker took
    wastes one round trip, not five. On SQLite they are ``claim`` and ``insert_event`` in the caller's transaction.
    """
    return claim_announced_later(conn, worker_id, now, lease_ms).get()


def claim_or_next_due(conn: sa.Connection, worker_id: str, now: int, lease_ms: int) -> tuple[Row | None, int | None]:
    """``claim_announced``, and when nothing was claimable, when the next task becomes due (``next_due_ms``). On
    PostgreSQL both come from the claim's one statement; on SQLite the read follows the claim."""
    if conn.dialect.name != "postgresql":
        task = claim_announced(conn, worker_id, now, lease_ms)
        return task, (next_due_ms(conn) if task is None else None)
    row = _CLAIM_ANNOUNCED.first(conn, _claim_announced_params(worker_id, now, lease_ms))
    if row is not None and row["id"] is None:
        return None, _earliest([row["next_pending_ms"], row["next_lease_end_ms"]])
    return _announced(row), None


def claim_announced_later(conn: sa.Connection, worker_id: str, now: int, lease_ms: int) -> Answer[Row | None]:
    """``claim_announced``, whose claimed task is read when asked for: inside ``prepared.answered_together`` on
    PostgreSQL, once every statement of the block was sent."""
    if conn.dialect.name == "postgresql":
        return _CLAIM_ANNOUNCED.first_later(conn, _claim_announced_params(worker_id, now, lease_ms)).then(_announced)
    task = claim(conn, worker_id, now, lease_ms, reserve_event=True)
    if task is not None:
        message = workers.claim_message(
            worker_id, task["previous_status"], task["previous_owner"], task["previous_released"], task["attempts"]
        )
        insert_event(conn, task["id"], task["event_seq"], now, "status", status="running", message=message)
        create = task["operation"] == "create"
        task["install"] = install_store.sealed_install_by_id(conn, task["install_id"]) if create else None
    return Answer.known(task)


def _claim_announced_params(worker_id: str, now: int, lease_ms: int) -> Row:
    return {
        "now": now,
        "worker": worker_id,
        "lease_until": now + lease_ms,
        "claimed_by": workers.claimed_by(worker_id),
        "resumed_by": workers.resumed_by(worker_id),
        "released_it": workers.RELEASED_IT,
        "let_lease_expire": workers.LET_LEASE_EXPIRE,
    }


_INSTALL = "install__"  # the prefix of the claimed task's install columns in ``_CLAIM_ANNOUNCED``'s row


def _announced(row: Row | None) -> Row | None:
    """The claimed task of a ``_CLAIM_ANNOUNCED`` row, with its install (see ``claim_announced``) under
    ``"install"``, or None if nothing was claimed."""
    if row is None or row["id"] is None:
        return None
    del row["next_pending_ms"], row["next_lease_end_ms"]
    install = {name: row.pop(f"{_INSTALL}{name}") for name in installs.c.keys()}
    row["install"] = install if install["id"] is not None else None
    lease = row.pop("previous_lease")
    # 0: the previous owner gave the task back (graceful stop); else its lease ran out (it died).
    row["previous_released"] = row["previous_status"] == "running" and lease == 0
    return row


def _claim_announced() -> sa.Select[Any]:
    """The claim (``_CANDIDATES`` and ``_take``: the same candidate in the same order), the event number's
    reservation and the running event, in one PostgreSQL statement. The candidate's row lock (FOR UPDATE SKIP LOCKED)
    is held until the statement ends, and the update is still guarded by the status and lease that were read."""
    found = _CANDIDATES.cte("found")
    taken = (
        tasks.update()
        .where(
            tasks.c.id == found.c.id,
            tasks.c.status == found.c.status,
            tasks.c.locked_until_ms.is_not_distinct_from(found.c.locked_until_ms),
        )
        .values(
            status="running",
            locked_by=sa.bindparam("worker"),
            locked_until_ms=sa.bindparam("lease_until"),
            attempts=tasks.c.attempts + 1,
            updated_at_ms=sa.bindparam("now"),
            event_seq=tasks.c.event_seq + 1,
        )
        .returning(
            *tasks.c,
            found.c.status.label("previous_status"),
            found.c.locked_by.label("previous_owner"),
            found.c.locked_until_ms.label("previous_lease"),
        )
        .cte("taken")
    )
    text = sa.String()
    # workers.claim_message, in SQL: who claimed it, and from whom (a released or an expired lease) when resumed.
    message = sa.case(
        (
            taken.c.previous_status == "running",
            sa.bindparam("resumed_by", type_=text)
            + taken.c.previous_owner
            + sa.case(
                (taken.c.previous_lease == 0, sa.bindparam("released_it", type_=text)),
                else_=sa.bindparam("let_lease_expire", type_=text),
            )
            + " (attempt "
            + sa.cast(taken.c.attempts, text)
            + ")",
        ),
        else_=sa.bindparam("claimed_by", type_=text),
    )
    announced = (
        task_events.insert()
        .from_select(
            ["task_id", "seq", "created_at_ms", "kind", "status", "message"],
            sa.select(
                taken.c.id,
                taken.c.event_seq,
                sa.bindparam("now", type_=sa.BigInteger),
                sa.literal_column("'status'"),
                sa.literal_column("'running'"),
                message,
            ),
        )
        .cte("announced")
    )
    # One row whatever happens: the claimed task, or (all its columns null) when nothing was claimable, the first
    # entry of each queue index, for the worker's sleep. CASE evaluates those subqueries only when nothing was
    # claimed, so a woken worker that finds nothing pays one round trip, not a claim and then a read.
    nothing_claimed = taken.c.id.is_(None)
    one_row = sa.select(sa.literal(1).label("one")).subquery("one_row")
    # A create task's install too (read by its first step): one round trip fewer per task. Its write-only inputs
    # stay sealed (``installs.SEALED_COLUMNS``): the task opens them.
    claimed_install = [column.label(f"{_INSTALL}{column.name}") for column in install_store.SEALED_COLUMNS]
    its_install = sa.and_(installs.c.id == taken.c.install_id, taken.c.operation == "create")
    return (
        sa.select(
            taken,
            *claimed_install,
            sa.case((nothing_claimed, _FIRST_PENDING), else_=None).label("next_pending_ms"),
            sa.case((nothing_claimed, _FIRST_LEASE_END), else_=None).label("next_lease_end_ms"),
        )
        .select_from(one_row.outerjoin(taken, sa.true()).outerjoin(installs, its_install))
        .add_cte(announced)
    )


_CLAIM_ANNOUNCED = Prepared(_claim_announced())


def insert_event(conn: sa.Connection, task_id: str, seq: int, now: int, kind: str, **fields: Any) -> None:
    """Insert one event under a number already reserved on the task row (``claim(reserve_event=True)``, a new
    task's seq 1)."""
    _INSERT_EVENT.run(conn, _event_row(task_id, seq, now, kind, fields))


def _event_row(task_id: str, seq: int, now: int, kind: str, fields: Row) -> Row:
    """The task_events row of one event; refuses fields that are not event columns."""
    unknown = set(fields) - set(_EVENT_COLUMNS)
    if unknown:
        raise TypeError(f"unknown event fields: {sorted(unknown)}")
    row = {name: fields.get(name) for name in _EVENT_COLUMNS}
    return {"task_id": task_id, "seq": seq, "created_at_ms": now, "kind": kind, **row}


# Built once: the lease is renewed on every entity step, so the statement is reused rather than rebuilt.
_RENEW = (
    tasks.update()
    .where(
        tasks.c.id == sa.bindparam("task_id"),
        tasks.c.status == "running",
        tasks.c.locked_by == sa.bindparam("worker_id"),
    )
    .values(locked_until_ms=sa.bindparam("until"))
)
_NEXT_SEQ = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("task_id"))
    .values(event_seq=tasks.c.event_seq + 1)
    .returning(tasks.c.event_seq)
)
_INSERT_EVENT = Prepared(task_events.insert())  # built once: every step's events go through it
_EVENT_COLUMNS = ("status", "local_name", "entity_type", "action", "entity_id", "href", "message")


def live_leases(conn: sa.Connection) -> list[Row]:
    """Running tasks whose lease has not been handed back or expired on purpose: id, owner, lease end."""
    query = sa.select(tasks.c.id, tasks.c.locked_by, tasks.c.locked_until_ms).where(LEASED, tasks.c.locked_until_ms > 1)
    return [dict(r._mapping) for r in conn.execute(query)]


def expire_lease(conn: sa.Connection, task_id: str, locked_by: str, locked_until_ms: int) -> bool:
    """End a dead worker's lease now, if it is still exactly the one that was read.

    1, not 0: the lease ran out (its worker died); 0 means a worker handed the task back gracefully.
    """
    result = conn.execute(
        tasks.update()
        .where(
            tasks.c.id == task_id,
            tasks.c.status == "running",
            tasks.c.locked_by == locked_by,
            tasks.c.locked_until_ms == locked_until_ms,
        )
        .values(locked_until_ms=1)
    )
    return result.rowcount == 1


def renew_lease(conn: sa.Connection, task_id: str, worker_id: str, now: int, lease_ms: int) -> bool:
    """Extend the lease; False when this worker no longer owns the running task."""
    result = conn.execute(_RENEW, {"task_id": task_id, "worker_id": worker_id, "until": now + lease_ms})
    return result.rowcount == 1


def release_lease(conn: sa.Connection, task_id: str, worker_id: str) -> bool:
    """Give a running task back (graceful shutdown): it is claimable at once by the next worker."""
    result = conn.execute(
        tasks.update()
        .where(tasks.c.id == task_id, tasks.c.status == "running", tasks.c.locked_by == worker_id)
        .values(locked_until_ms=0)
    )
    return result.rowcount == 1


def update_owned(conn: sa.Connection, task_id: str, worker_id: str, now: int, **changes: Any) -> bool:
    """Write task fields only while ``worker_id`` owns the running task."""
    result = conn.execute(
        tasks.update()
        .where(tasks.c.id == task_id, tasks.c.status == "running", tasks.c.locked_by == worker_id)
        .values(updated_at_ms=now, **changes)
    )
    return result.rowcount == 1


def append_event(conn: sa.Connection, task_id: str, now: int, kind: str, **fields: Any) -> int:
    """Append one event; its ``seq`` is the task's next (the task row's counter serialises writers)."""
    row = _event_row(task_id, 0, now, kind, fields)  # built, and its fields checked, before the counter moves
    row["seq"] = seq = int(conn.execute(_NEXT_SEQ, {"task_id": task_id}).scalar_one())
    _INSERT_EVENT.run(conn, row)
    return seq


_GUARD_AND_RESERVE_STATEMENT = (
    tasks.update()
    .where(
        tasks.c.id == sa.bindparam("task_id"),
        tasks.c.status == "running",
        tasks.c.locked_by == sa.bindparam("worker_id"),
    )
    .values(locked_until_ms=sa.bindparam("until"), event_seq=tasks.c.event_seq + sa.bindparam("count"))
    .returning(tasks.c.event_seq)
)
_GUARD_AND_RESERVE = Prepared(_GUARD_AND_RESERVE_STATEMENT)


def _guard_statement(names: tuple[str, ...]) -> sa.Update:
    """``_GUARD_AND_RESERVE_STATEMENT`` that also sets these task columns (from parameters ``set_<name>``),
    overriding the lease renewal where it names ``locked_until_ms``."""
    unknown = set(names) - set(tasks.c.keys())
    if unknown:
        raise TypeError(f"tasks has no columns {sorted(unknown)}")
    return _GUARD_AND_RESERVE_STATEMENT.values({name: sa.bindparam(f"set_{name}") for name in names})


@functools.cache
def _guard_changing(names: tuple[str, ...]) -> Prepared:
    """``_guard_statement`` as a Prepared statement, built once per set of names."""
    return Prepared(_guard_statement(names))


_JOURNALED_COLUMNS = ("kind", *_EVENT_COLUMNS)


@functools.cache
def _journal_in_one(names: tuple[str, ...]) -> Prepared:
    """PostgreSQL: the guarded update of ``_guard_statement(names)`` and the insert of its events, numbered from the
    counter it returns (``events``: one JSON array of the event rows, each with its ``ordinal`` from 1), as one
    statement. It returns the counter, or no row (and inserts nothing) when the worker no longer owns the task."""
    guarded = _guard_statement(names).cte("guarded")
    # One JSON parameter rather than one text array per column: psycopg dumps it in a fifth of the time (12 µs
    # against 67 for four events), and that is paid on every batch of entity steps. Every column is unbounded
    # text, as a plain insert's parameters are: a value too long for its column is refused by the insert, not cut
    # short on the way.
    event = (
        sa.func.json_to_recordset(sa.bindparam("events", type_=postgresql.JSON))
        .table_valued(*(sa.column(name, sa.Text) for name in _JOURNALED_COLUMNS), sa.column("ordinal", sa.Integer))
        .render_derived(name="event", with_types=True)
    )
    journaled = (
        task_events.insert()
        .from_select(
            ["task_id", "seq", "created_at_ms", *_JOURNALED_COLUMNS],
            sa.select(
                sa.bindparam("task_id", type_=task_events.c.task_id.type),
                guarded.c.event_seq - sa.bindparam("count", type_=sa.Integer) + event.c.ordinal,
                sa.bindparam("at", type_=sa.BigInteger),
                *(event.c[name] for name in _JOURNALED_COLUMNS),
            ).select_from(guarded.join(event, sa.true())),
        )
        .cte("journaled")
    )
    return Prepared(sa.select(guarded.c.event_seq).add_cte(journaled))


def journal(
    conn: sa.Connection,
    task_id: str,
    worker_id: str,
    now: int,
    lease_ms: int,
    events: list[dict[str, Any]],
    changes: Row | None = None,
) -> bool:
    """Renew the lease and append ``events`` (each with a ``kind``) in one guarded statement (PostgreSQL) or one
    guarded statement plus one insert (SQLite); ``changes`` are more task columns for the same guarded update (the end
    of a task: status, no lease).

    False, and nothing written, when ``worker_id`` no longer owns the running task. This is the write every entity
    step makes inside its own transaction, so it is kept to as few statements as the database allows.
    """
    return journal_later(conn, task_id, worker_id, now, lease_ms, events, changes).get()


def journal_later(
    conn: sa.Connection,
    task_id: str,
    worker_id: str,
    now: int,
    lease_ms: int,
    events: list[dict[str, Any]],
    changes: Row | None = None,
) -> Answer[bool]:
    """``journal``, whose answer is read when asked for (see ``prepared.answered_together``)."""
    params: Row = {"task_id": task_id, "worker_id": worker_id, "until": now + lease_ms, "count": len(events)}
    names = tuple(sorted(changes or ()))
    params.update({f"set_{name}": value for name, value in (changes or {}).items()})
    rows = [
        _event_row(task_id, 0, now, event["kind"], {k: v for k, v in event.items() if k != "kind"}) for event in events
    ]
    if rows and conn.dialect.name == "postgresql":
        # The event numbers follow from the counter the guarded update moves: one statement, no answer awaited.
        params["at"] = now
        params["events"] = [
            {**{name: row[name] for name in _JOURNALED_COLUMNS}, "ordinal": ordinal}
            for ordinal, row in enumerate(rows, start=1)
        ]
        return _journal_in_one(names).first_later(conn, params).then(lambda found: found is not None)
    last = (_guard_changing(names) if names else _GUARD_AND_RESERVE).scalar(conn, params)
    if last is None:
        return Answer.known(False)
    if rows:
        first = int(last) - len(rows) + 1
        for offset, row in enumerate(rows):
            row["seq"] = first + offset
        _INSERT_EVENT.many(conn, rows)
    return Answer.known(True)


def list_events(conn: sa.Connection, task_id: str, after_seq: int, limit: int) -> list[Row]:
    query = (
        sa.select(task_events)
        .where(task_events.c.task_id == task_id, task_events.c.seq > after_seq)
        .order_by(task_events.c.seq)
        .limit(limit)
    )
    return [dict(r._mapping) for r in conn.execute(query)]


_STEP_OUTCOMES = (
    sa.select(task_events.c.local_name, task_events.c.entity_type, task_events.c.action, task_events.c.href)
    .where(task_events.c.task_id == sa.bindparam("task_id"), task_events.c.kind == "step_done")
    .order_by(task_events.c.seq)
)


def step_outcomes(conn: sa.Connection, task_id: str) -> list[Row]:
    """The outcome events of the task's entity steps, in order (only the columns a link needs)."""
    return [dict(r._mapping) for r in conn.execute(_STEP_OUTCOMES, {"task_id": task_id})]


def step_outcomes_of(conn: sa.Connection, task_ids: list[str]) -> dict[str, list[Row]]:
    """``step_outcomes`` of many tasks in one query, by task id."""
    found: dict[str, list[Row]] = {task_id: [] for task_id in task_ids}
    if not task_ids:
        return found
    query = (
        sa.select(
            task_events.c.task_id,
            task_events.c.local_name,
            task_events.c.entity_type,
            task_events.c.action,
            task_events.c.href,
        )
        .where(task_events.c.task_id.in_(task_ids), task_events.c.kind == "step_done")
        .order_by(task_events.c.task_id, task_events.c.seq)
    )
    for row in conn.execute(query):
        outcome = dict(row._mapping)
        found[outcome.pop("task_id")].append(outcome)
    return found


def next_due_ms(conn: sa.Connection) -> int | None:
    """When the next task becomes due (the earliest run_after or lease expiry), for the worker's sleep."""
    row = _NEXT_DUE.first(conn, {})
    return _earliest(list((row or {}).values()))


def _earliest(times: list[Any]) -> int | None:
    """The earliest of the queue indexes' first entries (None where an index is empty), or None."""
    known = [int(value) for value in times if value is not None]
    return min(known) if known else None


# One statement (the worker reads it without a transaction): the first entry of each queue index.
_NEXT_DUE = Prepared(sa.select(_FIRST_PENDING.label("pending"), _FIRST_LEASE_END.label("leased")))
