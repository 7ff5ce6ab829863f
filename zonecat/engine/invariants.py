"""The invariants of the entity store, checked against installs and task journals (``zonecat check``).

Each check is one query that returns the offending rows, so the whole check is a handful of scans whatever the
size of the database. A healthy database yields no violation.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from zonecat.store.schema import entities, entity_uses, installs, packages, tasks, zones


@dataclass(frozen=True)
class Violation:
    """One broken invariant: which rule, on which object, and what was found."""

    rule: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.subject}: {self.message}"


def check(conn: sa.Connection, now_ms: int, zone_id: str | None = None, lease_grace_ms: int = 0) -> list[Violation]:
    """Every violation in the database (or in one zone)."""
    found: list[Violation] = []
    for rule in (
        _orphaned_managed_entities,
        _uses_of_finished_installs,
        _uses_disagree_with_entities,
        _running_without_lease,
        _duplicate_natural_keys,
        _install_status_disagrees_with_tasks,
        _rows_of_missing_zones,
    ):
        found.extend(rule(conn, now_ms, zone_id, lease_grace_ms))
    return found


def _zone(column: sa.ColumnElement[str], zone_id: str | None) -> list[sa.ColumnElement[bool]]:
    return [] if zone_id is None else [column == zone_id]


def _orphaned_managed_entities(conn: sa.Connection, _now: int, zone_id: str | None, _grace: int) -> list[Violation]:
    """A managed entity lives only while some install uses it."""
    used = sa.select(entity_uses.c.entity_id)
    query = sa.select(entities.c.id, entities.c.type, entities.c.identifier).where(
        entities.c.managed.is_(True), entities.c.id.not_in(used), *_zone(entities.c.zone_id, zone_id)
    )
    return [
        Violation("orphan", row.id, f"managed {row.type} {row.identifier} is used by no install")
        for row in conn.execute(query)
    ]


def _latest_tasks() -> sa.Subquery:
    """Each install's latest task (ids sort by creation time)."""
    return (
        sa.select(tasks.c.install_id, sa.func.max(tasks.c.id).label("task_id")).group_by(tasks.c.install_id).subquery()
    )


def _uses_of_finished_installs(conn: sa.Connection, _now: int, zone_id: str | None, _grace: int) -> list[Violation]:
    """A deleted install, or one whose create failed and was rolled back, uses nothing any more. (An install
    whose *delete* failed keeps what that delete had not removed yet.)"""
    latest = _latest_tasks()
    query = (
        sa.select(entity_uses.c.install_id, entity_uses.c.local_name, entity_uses.c.entity_id, installs.c.status)
        .join(installs, installs.c.id == entity_uses.c.install_id)
        .join(latest, latest.c.install_id == installs.c.id)
        .join(tasks, tasks.c.id == latest.c.task_id)
        .where(
            sa.or_(
                installs.c.status == "deleted",
                sa.and_(installs.c.status == "failed", tasks.c.operation == "create"),
            ),
            *_zone(entity_uses.c.zone_id, zone_id),
        )
    )
    return [
        Violation("leftover", row.install_id, f"{row.status} install still uses {row.entity_id} as '{row.local_name}'")
        for row in conn.execute(query)
    ]


def _uses_disagree_with_entities(conn: sa.Connection, _now: int, zone_id: str | None, _grace: int) -> list[Violation]:
    """Each use's role matches its entity: created → made by that install, adopted → unmanaged, shared → managed;
    and every use belongs to an existing install of the entity's zone."""
    query = (
        sa.select(
            entity_uses.c.install_id,
            entity_uses.c.local_name,
            entity_uses.c.role,
            entities.c.id,
            entities.c.managed,
            entities.c.created_by_install_id,
            entities.c.zone_id,
            installs.c.id.label("found_install"),
            installs.c.zone_id.label("install_zone"),
        )
        .join(entities, entities.c.id == entity_uses.c.entity_id)
        .outerjoin(installs, installs.c.id == entity_uses.c.install_id)
        .where(*_zone(entity_uses.c.zone_id, zone_id))
    )
    problems: list[Violation] = []
    for row in conn.execute(query):
        subject = f"{row.install_id}/{row.local_name}"
        if row.found_install is None:
            problems.append(Violation("dangling-use", subject, f"uses {row.id} but the install does not exist"))
        elif row.install_zone != row.zone_id:
            problems.append(Violation("cross-zone", subject, f"uses {row.id} of zone {row.zone_id}"))
        if row.role == "created" and (not row.managed or row.created_by_install_id != row.install_id):
            problems.append(Violation("role", subject, f"recorded as created but {row.id} was not made by it"))
        elif row.role == "adopted" and row.managed:
            problems.append(Violation("role", subject, f"recorded as adopted but {row.id} is managed"))
        elif row.role == "shared" and not row.managed:
            problems.append(Violation("role", subject, f"recorded as shared but {row.id} is unmanaged"))
    return problems


def _running_without_lease(conn: sa.Connection, now: int, zone_id: str | None, grace: int) -> list[Violation]:
    """No task is running without a live lease."""
    query = sa.select(tasks.c.id, tasks.c.locked_by, tasks.c.locked_until_ms).where(
        tasks.c.status == "running",
        sa.or_(tasks.c.locked_until_ms.is_(None), tasks.c.locked_until_ms < now - grace),
        *_zone(tasks.c.zone_id, zone_id),
    )
    return [
        Violation("lease", row.id, f"running, but the lease of {row.locked_by} ended at {row.locked_until_ms}")
        for row in conn.execute(query)
    ]


def _duplicate_natural_keys(conn: sa.Connection, _now: int, zone_id: str | None, _grace: int) -> list[Violation]:
    """No natural key (zone, type, identifier) appears twice."""
    query = (
        sa.select(entities.c.zone_id, entities.c.type, entities.c.identifier, sa.func.count().label("copies"))
        .where(*_zone(entities.c.zone_id, zone_id))
        .group_by(entities.c.zone_id, entities.c.type, entities.c.identifier)
        .having(sa.func.count() > 1)
    )
    return [
        Violation("duplicate", f"{row.zone_id}/{row.type}", f"{row.identifier} exists {row.copies} times")
        for row in conn.execute(query)
    ]


_EXPECTED = {
    # install status -> (operation, statuses) that its latest task must have
    "pending": ("create", ("pending", "running")),
    "active": ("create", ("completed",)),
    "deleting": ("delete", ("pending", "running")),
    "deleted": ("delete", ("completed",)),
}


def _install_status_disagrees_with_tasks(
    conn: sa.Connection, _now: int, zone_id: str | None, _grace: int
) -> list[Violation]:
    """An install's status follows from its latest task (design §2); at most one task of it is unfinished."""
    latest = (
        sa.select(tasks.c.install_id, sa.func.max(tasks.c.id).label("task_id")).group_by(tasks.c.install_id).subquery()
    )
    query = (
        sa.select(installs.c.id, installs.c.status, tasks.c.operation, tasks.c.status.label("task_status"))
        .join(latest, latest.c.install_id == installs.c.id)
        .join(tasks, tasks.c.id == latest.c.task_id)
        .where(*_zone(installs.c.zone_id, zone_id))
    )
    problems: list[Violation] = []
    for row in conn.execute(query):
        if row.status == "failed":
            if row.task_status != "failed":
                problems.append(Violation("status", row.id, f"failed, but its latest task is {row.task_status}"))
            continue
        operation, statuses = _EXPECTED[row.status]
        if row.operation != operation or row.task_status not in statuses:
            problems.append(
                Violation("status", row.id, f"{row.status}, but its latest task is a {row.task_status} {row.operation}")
            )
    unfinished = (
        sa.select(tasks.c.install_id, sa.func.count().label("open"))
        .where(tasks.c.status.in_(("pending", "running")), *_zone(tasks.c.zone_id, zone_id))
        .group_by(tasks.c.install_id)
        .having(sa.func.count() > 1)
    )
    problems.extend(
        Violation("status", row.install_id, f"{row.open} unfinished tasks at once") for row in conn.execute(unfinished)
    )
    return problems


def _rows_of_missing_zones(conn: sa.Connection, _now: int, zone_id: str | None, _grace: int) -> list[Violation]:
    """Everything of a zone goes with it (a zone is deleted with all it holds, design §3.2): no install, task,
    entity, use or package of a zone that does not exist. A zone deleted while an install, a package or an entity
    was being created in it could leave such rows behind before writes held their zone (``zone_store.hold_zone``)."""
    problems: list[Violation] = []
    for table, column in (
        (installs, installs.c.zone_id),
        (tasks, tasks.c.zone_id),
        (entities, entities.c.zone_id),
        (entity_uses, entity_uses.c.zone_id),
        (packages, packages.c.zone_key),
    ):
        query = (
            sa.select(column.label("zone_id"), sa.func.count().label("rows"))
            .where(column != "", column.not_in(sa.select(zones.c.id)), *_zone(column, zone_id))
            .group_by(column)
            .order_by(column)
        )
        problems.extend(
            Violation("zone-gone", row.zone_id, f"{row.rows} {table.name} row(s) of a zone that does not exist")
            for row in conn.execute(query)
        )
    return problems
