"""Install and uninstall requests: validate, write the install and its task in one transaction, plan deletes."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.clock import now_ms, rfc3339
from zonecat.domain import bindings, idempotency, schemas
from zonecat.engine.access import Principal, found_zone, visible_zone
from zonecat.engine.released import RELEASED
from zonecat.ids import new_id
from zonecat.store import entities as entity_store
from zonecat.store import installs as install_store
from zonecat.store import packages as package_store
from zonecat.store import tasks as task_store
from zonecat.store import zones as zone_store
from zonecat.store.database import Database
from zonecat.store.prepared import Answer, answered_together, sent_together

Row = dict[str, Any]
log = logging.getLogger("zonecat.task")
# Keycard's PackageVersion.version is an int32; anything larger could not name a version (and overflows SQL).
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class RequestInfo:
    """What a request's task or warnings must remember of it."""

    request_id: str
    path: str
    method: str
    idempotency_key: str | None
    body_sha: str


def _replay(conn: sa.Connection, principal: Principal, info: RequestInfo) -> Row | None:
    """The task of an earlier request with the same idempotency key, or a 409 if its body differed."""
    if info.idempotency_key is None:
        return None
    now = now_ms()
    found = install_store.find_idempotency(
        conn, principal.organization_id, info.idempotency_key, info.method, info.path, now - idempotency.WINDOW_MS
    )
    earlier = idempotency.Earlier(found["body_sha"], found["task_id"], found["created_at_ms"]) if found else None
    decision = idempotency.decide(earlier, info.body_sha, now)
    if decision is idempotency.Decision.CONFLICT:
        raise errors.Conflict(
            "this idempotency key was already used with a different request body",
            [errors.Detail("Idempotency-Key", "reused with a different body", "conflict")],
        )
    if decision is idempotency.Decision.NEW or earlier is None:
        return None
    return task_store.task_by_id(conn, earlier.task_id)


def _remember(conn: sa.Connection, principal: Principal, info: RequestInfo, task_id: str, now: int) -> None:
    if info.idempotency_key is None:
        return
    install_store.remember_idempotency(
        conn,
        {
            "organization_id": principal.organization_id,
            "key": info.idempotency_key,
            "method": info.method,
            "path": info.path,
            "body_sha": info.body_sha,
            "task_id": task_id,
            "created_at_ms": now,
        },
    )


def _log_created(task: Row) -> None:
    """The task's first transition (design §2): one log line when it is created ``pending``. No inputs."""
    log.info(
        "task pending",
        extra={
            "task_id": task["id"],
            "install_id": task["install_id"],
            "operation": task["operation"],
            "status": "pending",
            "zone": task["zone_id"],
        },
    )


def _replay_after_race(db: Database, principal: Principal, info: RequestInfo) -> Row | None:
    """After an insert lost a race on its idempotency key (PostgreSQL: both requests passed the replay check,
    the second one's insert hit the key's primary key), answer as a replay of the winner."""
    if info.idempotency_key is None:
        return None
    with db.read() as conn:
        return _replay(conn, principal, info)


def request_install(
    db: Database, principal: Principal, zone_id: str, body: Row, info: RequestInfo, max_inputs_bytes: int
) -> tuple[Row, bool]:
    """Create the install and its pending create task. Returns (task, created) — not created on a replay."""
    try:
        with db.request_turn():
            task, created = _request_install(db, principal, zone_id, body, info, max_inputs_bytes)
    except sa.exc.IntegrityError:
        replayed = _replay_after_race(db, principal, info)
        if replayed is None:
            raise
        return replayed, False
    if created:
        _log_created(task)
    return task, created


def _request_install(
    db: Database, principal: Principal, zone_id: str, body: Row, info: RequestInfo, max_inputs_bytes: int
) -> tuple[Row, bool]:
    principal.require_zone(zone_id)  # before anything else, the idempotent replay included
    # On SQLite the request is decided (zone, package, version, inputs) before the write transaction, under the one
    # write lock every writer of both processes queues on; inside it, one statement checks that the version is
    # still installable and the zone still there (a zone deleted in between would otherwise be left with this
    # install). If not, or the request cannot be decided, it is decided again in the write
    # transaction, where an idempotent replay comes first and every error is raised. On PostgreSQL writers do not
    # queue, and deciding inside the write transaction saves the read transaction's round trips.
    prepared: _Prepared | None = None
    if db.is_sqlite:
        try:
            with db.read() as conn:
                visible_zone(conn, principal, zone_id)
                prepared = _decide(conn, principal, zone_id, body, max_inputs_bytes)
        except errors.ZonecatError:
            prepared = None
    now = now_ms()
    with db.write() as conn:
        package: Answer[Row | None] | None = None
        if prepared is not None and not package_store.installable_in(
            conn, prepared.version["id"], principal.organization_id, zone_id
        ):
            prepared = None  # the version was archived, or the zone deleted, since: decided again, the zone first
        if prepared is None:
            zone, package = _read_ahead(conn, principal, zone_id, body)
            found_zone(zone.get(), zone_id)
        replayed = _replay(conn, principal, info)
        if replayed is not None:
            return replayed, False
        if prepared is None:
            prepared = _decide(conn, principal, zone_id, body, max_inputs_bytes, package)
        with sent_together(conn):  # on PostgreSQL, the writes and the COMMIT in one round trip
            task = _insert_request(conn, principal, zone_id, info, new_id("ins", now), prepared, now)
    return task, True


def _read_ahead(
    conn: sa.Connection, principal: Principal, zone_id: str, body: Row
) -> tuple[Answer[Row | None], Answer[Row | None] | None]:
    """The zone and the package the body names (when it names one at all), with the package's current version when
    the body names no version, read together: on PostgreSQL one round trip, the transaction's BEGIN and the hold
    on the zone included (``zone_store.hold_zone``: a zone deleted meanwhile is read as gone, and one not deleted
    yet is not deleted before this install is written). The answers are judged in the request's order (the zone's
    404 first)."""
    ref = body.get("package_id")
    with answered_together(conn):
        zone_store.hold_zone(conn, zone_id)
        zone = zone_store.get_zone_later(conn, principal.organization_id, zone_id)
        package = None
        if isinstance(ref, str) and ref:
            organization_id = principal.organization_id
            if body.get("version") is None:
                package = package_store.find_package_brief_with_current_later(conn, organization_id, zone_id, ref)
            else:
                package = package_store.find_package_brief_later(conn, organization_id, zone_id, ref)
    return zone, package


def _insert_request(
    conn: sa.Connection,
    principal: Principal,
    zone_id: str,
    info: RequestInfo,
    install_id: str,
    prepared: _Prepared,
    now: int,
) -> Row:
    """The install, its create task and the task's first event, and the idempotency key if the request has one."""
    package, version = prepared.package, prepared.version
    install_store.insert_install(
        conn,
        {
            "id": install_id,
            "organization_id": principal.organization_id,
            "zone_id": zone_id,
            "package_id": package["id"],
            "package_slug": package["slug"],
            "package_version": version["version"],
            "version_id": version["id"],
            "status": "pending",
            "inputs": prepared.public_inputs,
            "secret_inputs": prepared.secret_inputs,
            "outputs": None,
            "created_at_ms": now,
            "updated_at_ms": now,
        },
    )
    task = _insert_task(
        conn, principal, zone_id, install_id, package["id"], package["slug"], version["version"], "create", [], now
    )
    _remember(conn, principal, info, task["id"], now)
    return task


def _decide(
    conn: sa.Connection,
    principal: Principal,
    zone_id: str,
    body: Row,
    max_inputs_bytes: int,
    package: Answer[Row | None] | None = None,
) -> _Prepared:
    """The body's fields validated, then the package, version and inputs they name (``_prepare``); the caller has
    checked the zone first (a missing zone is a 404 whatever the body). ``package`` is the package already read for
    the body's ``package_id`` (``_read_ahead``), if it was."""
    package_ref = body.get("package_id")
    if not isinstance(package_ref, str) or not package_ref:
        raise errors.ValidationFailed(
            "package_id is required", [errors.Detail("package_id", "is required and must be a non-empty string")]
        )
    inputs = body.get("inputs", {})
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        raise errors.ValidationFailed("inputs must be an object", [errors.Detail("inputs", "must be an object")])
    # Bytes as they travel (UTF-8), not as ``json.dumps`` escapes them by default (a "€" would count 6).
    if len(json.dumps(inputs, ensure_ascii=False).encode("utf-8", "surrogatepass")) > max_inputs_bytes:
        raise errors.BadRequest(
            f"inputs are larger than {max_inputs_bytes} bytes",
            [errors.Detail("inputs", f"larger than {max_inputs_bytes} bytes", "bad_request")],
        )
    version_number = body.get("version")
    if version_number is not None and (
        isinstance(version_number, bool)
        or not isinstance(version_number, int)
        or not 1 <= version_number <= MAX_VERSION
    ):
        raise errors.ValidationFailed(
            "version must be a positive 32-bit integer",
            [errors.Detail("version", f"must be an integer from 1 to {MAX_VERSION}")],
        )
    return _prepare(conn, principal, zone_id, package_ref, version_number, inputs, package)


@dataclass(frozen=True)
class _Prepared:
    package: Row
    version: Row
    public_inputs: Row
    secret_inputs: Row


def _prepare(
    conn: sa.Connection,
    principal: Principal,
    zone_id: str,
    package_ref: str,
    version_number: int | None,
    inputs: Row,
    read_ahead: Answer[Row | None] | None = None,
) -> _Prepared:
    """The package and version an install request names, and its inputs validated against the version's schema."""
    if read_ahead is not None:
        package = read_ahead.get()
    else:
        package = package_store.find_package_brief(conn, principal.organization_id, zone_id, package_ref)
    if package is None:
        raise errors.NotFound(f"package {package_ref} not found")
    if version_number is None:
        if "current_version_id" in package:  # read with the package (``_read_ahead``)
            version = _current_version_of(package)
        else:
            version = package_store.current_version_brief(conn, package["id"])
        if version is None:
            raise errors.Conflict(
                f"package {package['slug']} has no released version to install",
                [errors.Detail("package_id", "no released, unarchived version", "conflict")],
            )
    else:
        version = package_store.find_version_brief(conn, package["id"], version_number)
        if version is None:
            raise errors.NotFound(f"package {package['slug']} has no version {version_number}")
        if version["archived_at_ms"] is not None:
            raise errors.Conflict(
                f"version {version_number} of package {package['slug']} is archived",
                [errors.Detail("version", "archived versions cannot be installed", "conflict")],
            )
    schema = RELEASED.input_schema_of(conn, version["id"])
    if schema is None:
        raise errors.NotFound(f"package {package['slug']} has no version {version['version']}")
    validated, problems = schemas.validate_instance(schema, inputs, "inputs")
    if problems:
        raise errors.ValidationFailed(
            "inputs do not match the package's input schema",
            [errors.Detail(p.field, p.message) for p in problems],
        )
    assert isinstance(validated, dict)
    unreadable = bindings.integers_out_of_range(validated, "inputs")
    if unreadable:
        raise errors.ValidationFailed(
            "inputs hold integers that bindings cannot read", [errors.Detail(p.field, p.message) for p in unreadable]
        )
    # Write-only values (at any depth) are never returned: ``inputs`` holds what reads may show, and
    # ``secret_inputs`` the full value of every top-level input that had a write-only part.
    public, _ = schemas.strip_write_only(schema, validated)
    assert isinstance(public, dict)
    secret = {k: v for k, v in validated.items() if k not in public or public[k] != v}
    return _Prepared(package, version, public, secret)


def _current_version_of(package: Row) -> Row | None:
    """The current version as ``current_version_brief`` gives it, from a package read with it."""
    if package["current_version_id"] is None:
        return None
    return {"id": package["current_version_id"], "version": package["current_version"], "archived_at_ms": None}


def _insert_task(
    conn: sa.Connection,
    principal: Principal,
    zone_id: str,
    install_id: str,
    package_id: str,
    package_slug: str,
    version: int,
    operation: str,
    warnings: list[Row],
    now: int,
) -> Row:
    task: Row = {
        "id": new_id("tsk", now),
        "organization_id": principal.organization_id,
        "zone_id": zone_id,
        "install_id": install_id,
        "operation": operation,
        "status": "pending",
        "phase": "apply",
        "error_message": None,
        "warnings": warnings,
        "package_id": package_id,
        "package_slug": package_slug,
        "package_version": version,
        "run_after_ms": now,
        "locked_by": None,
        "locked_until_ms": None,
        "attempts": 0,
        "event_seq": 0,
        "created_at_ms": now,
        "updated_at_ms": now,
    }
    # A new task's first event is seq 1: written with the task, without the counter's read-modify-write.
    task_store.insert_task(conn, task, {"kind": "status", "status": "pending", "message": f"{operation} requested"})
    task["event_seq"] = 1
    return task


def plan_warnings(conn: sa.Connection, install: Row, info: RequestInfo, now: int) -> list[Row]:
    """One warning per entity the delete will preserve (design §6), computed when the DELETE arrives."""
    warnings: list[Row] = []
    uses = entity_store.uses_of_install(conn, install["id"])
    found = entity_store.entities_by_ids(conn, [use["entity_id"] for use in uses])
    staying = entity_store.staying_users(conn, install["id"])
    for use in uses:
        entity = found[use["entity_id"]]
        label = f"{entity['type']} '{entity['identifier']}' ({entity['id']})"
        if not entity["managed"]:
            message = f"{label} was not created by the catalog and will be preserved"
        else:
            # A user whose own delete is already under way is leaving too: it keeps the entity only until the
            # last of these deletes runs, which removes it, so it does not make this delete preserve anything.
            others = staying.get(entity["id"], [])
            if not others:
                continue
            message = f"{label} is still used by install {others[0]} and will be preserved"
        warnings.append(
            {
                "code": "conflict",
                "status": 409,
                "message": message,
                "path": info.path,
                "request_id": info.request_id,
                "timestamp": rfc3339(now),
                "details": [{"code": "conflict", "field": f"entities.{use['local_name']}", "message": message}],
            }
        )
    return warnings


def request_delete(db: Database, principal: Principal, zone_id: str, install_id: str, info: RequestInfo) -> Row:
    """Start (or return the existing) delete task of an install."""
    try:
        with db.request_turn():
            task, created = _request_delete(db, principal, zone_id, install_id, info)
    except sa.exc.IntegrityError:
        replayed = _replay_after_race(db, principal, info)
        if replayed is None:
            raise
        return replayed
    if created:
        _log_created(task)
    return task


def _request_delete(
    db: Database, principal: Principal, zone_id: str, install_id: str, info: RequestInfo
) -> tuple[Row, bool]:
    principal.require_zone(zone_id)  # before anything else, the idempotent replay included
    now = now_ms()
    with db.write() as conn:
        # The zone, the install and its unfinished task read together: on PostgreSQL one round trip, the BEGIN
        # included, where they took four. Judged in this order: a missing zone is a 404 first, the idempotent
        # replay included.
        with answered_together(conn):
            zone = zone_store.get_zone_later(conn, principal.organization_id, zone_id)
            found = install_store.get_install_later(conn, zone_id, install_id)
            running = task_store.unfinished_task_of_later(conn, install_id)
        found_zone(zone.get(), zone_id)
        replayed = _replay(conn, principal, info)
        if replayed is not None:
            return replayed, False
        install = found.get()
        if install is None:
            raise errors.NotFound(f"install {install_id} not found")
        unfinished = running.get()
        if unfinished is None and install["status"] in ("pending", "deleting"):
            # Read in one round trip but by two statements (READ COMMITTED on PostgreSQL): the task that moved the
            # install may have ended in between. The install as it is now decides, not a contradiction of both.
            install = install_store.get_install(conn, zone_id, install_id) or install
        if unfinished is not None:
            if unfinished["operation"] == "delete":
                return unfinished, False
            raise errors.Conflict(
                f"install {install_id} is still being created (task {unfinished['id']}); delete it once that "
                "task has finished",
                [errors.Detail("install_id", f"install is {install['status']}", "conflict")],
            )
        if install["status"] == "deleted":
            last = task_store.last_task_of(conn, install_id, "delete")
            if last is not None:
                return last, False
        if install["status"] not in ("active", "failed"):
            raise errors.Conflict(f"install {install_id} is {install['status']} and cannot be deleted")
        warnings = plan_warnings(conn, install, info, now)
        if not install_store.move_install(conn, install_id, ("active", "failed"), "deleting", now):
            # A concurrent DELETE won (PostgreSQL, READ COMMITTED): its delete task is the answer (design §2).
            winner = task_store.unfinished_task_of(conn, install_id)
            if winner is not None and winner["operation"] == "delete":
                return winner, False
            # ... or has already finished it: its task is still the answer.
            if winner is None:
                now_there = install_store.get_install(conn, zone_id, install_id)
                last = task_store.last_task_of(conn, install_id, "delete")
                if now_there is not None and now_there["status"] == "deleted" and last is not None:
                    return last, False
            raise errors.Conflict(f"install {install_id} changed state; retry")
        with sent_together(conn):  # on PostgreSQL, the writes and the COMMIT in one round trip
            task = _insert_task(
                conn,
                principal,
                zone_id,
                install_id,
                install["package_id"],
                install["package_slug"],
                install["package_version"],
                "delete",
                warnings,
                now,
            )
            _remember(conn, principal, info, task["id"], now)
    return task, True
