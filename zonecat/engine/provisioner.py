"""Runs one claimed catalog task to its end (design §6).

Each entity step is one transaction that renews the lease (guarded by the owner), changes the entity, records
the install's use of it and appends the step's event. A step is therefore wholly done or not at all, and a worker
that lost its lease writes nothing. Before a step starts its intent is written, so the events show where an
interrupted task stopped. A resumed task skips every local name that already has a use row.

The entity lifecycle rule, applied after every removal of a use: a *managed* entity (created by the catalog)
lives while some install uses it; an *unmanaged* one (created through the typed collections) is never deleted
by the catalog.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.clock import now_ms
from zonecat.domain import bindings, schemas
from zonecat.domain.entity_types import ENTITY_TYPES
from zonecat.domain.kinds import KINDS
from zonecat.domain.manifest import Manifest, slugify
from zonecat.domain.problems import Problem
from zonecat.engine.views import entity_href, entity_read
from zonecat.ids import new_id
from zonecat.store import entities as entity_store
from zonecat.store import installs as install_store
from zonecat.store import packages as package_store
from zonecat.store import tasks as task_store
from zonecat.store.database import Database

Row = dict[str, Any]
log = logging.getLogger("zonecat.task")

MAX_ATTEMPTS = 10


class Interrupted(Exception):
    """The worker is shutting down: the task stops between steps and is resumed later."""


def describe_problems(problems: list[Problem]) -> str:
    return "; ".join(f"{p.field}: {p.message}" for p in problems)


class TaskRun:
    """One execution of one claimed task by one worker."""

    def __init__(self, db: Database, task: Row, worker_id: str, lease_ms: int, should_stop: Callable[[], bool]) -> None:
        self.db = db
        self.task = task
        self.task_id: str = task["id"]
        self.zone_id: str = task["zone_id"]
        self.install_id: str = task["install_id"]
        self.worker_id = worker_id
        self.lease_ms = lease_ms
        self.should_stop = should_stop
        self.lock = threading.Lock()

    # -- transactions --------------------------------------------------------------------------------------

    def _guard(self, conn: sa.Connection, now: int) -> None:
        """Renew the lease inside the step's transaction; abort the step if another worker owns the task."""
        if not task_store.renew_lease(conn, self.task_id, self.worker_id, now, self.lease_ms):
            raise errors.LeaseLost()

    def _event(self, conn: sa.Connection, now: int, kind: str, **fields: Any) -> None:
        task_store.append_event(conn, self.task_id, now, kind, **fields)

    def _checkpoint(self) -> None:
        if self.should_stop():
            raise Interrupted()

    # -- entry ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        if self.task["attempts"] > MAX_ATTEMPTS and self.task["phase"] == "apply":
            self._give_up()
            return
        if self.task["operation"] == "create":
            if self.task["phase"] == "rollback":
                self._rollback()
            else:
                self._create()
        else:
            self._delete()

    def _give_up(self) -> None:
        message = f"gave up after {MAX_ATTEMPTS} attempts; every attempt was interrupted"
        if self.task["operation"] == "create":
            self.fail_and_roll_back(None, None, message)
        else:
            self.finish("failed", "failed", ("deleting",), error_message=message)

    # -- create --------------------------------------------------------------------------------------------

    def _load(self) -> tuple[Row, Manifest]:
        with self.db.read() as conn:
            install = install_store.install_by_id(conn, self.install_id)
            if install is None:
                raise errors.NotFound(f"install {self.install_id} vanished")
            version = package_store.find_version(conn, install["package_id"], install["version_id"])
        if version is None:
            raise errors.NotFound(f"package version {install['version_id']} vanished")
        return install, Manifest.from_raw(version["manifest"])

    def _create(self) -> None:
        install, manifest = self._load()
        inputs = {**install["inputs"], **install["secret_inputs"]}
        try:
            entity_inputs = self._entity_inputs(manifest, inputs)
        except errors.ZonecatError as exc:
            self.fail_and_roll_back(None, None, f"input bindings: {exc.message}")
            return
        with self.db.read() as conn:
            done = {use["local_name"]: use for use in entity_store.uses_of_install(conn, self.install_id)}
            entity_rows = entity_store.entities_by_ids(conn, [use["entity_id"] for use in done.values()])
        resolved: dict[str, Any] = {"inputs": entity_inputs}
        for name, use in done.items():
            row = entity_rows[use["entity_id"]]
            resolved[name] = {"href": entity_href(row), "outputs": entity_read(row)}
        for position, name in enumerate(manifest.order()):
            if name in done:
                continue
            self._checkpoint()
            spec = manifest.entities[name]
            now = now_ms()
            with self.db.write() as conn:
                self._guard(conn, now)
                self._event(conn, now, "step_started", local_name=name, entity_type=spec.type)
            try:
                attributes = self._entity_attributes(manifest, name, resolved)
            except errors.ZonecatError as exc:
                self.fail_and_roll_back(name, spec.type, exc.message)
                return
            row = self._create_step(name, spec.type, attributes, position)
            resolved[name] = {"href": entity_href(row), "outputs": entity_read(row)}
        try:
            outputs = self._outputs(manifest, resolved)
        except errors.ZonecatError as exc:
            self.fail_and_roll_back(None, None, f"outputs: {exc.message}")
            return
        self.finish("completed", "active", ("pending",), outputs=outputs)

    def _entity_inputs(self, manifest: Manifest, inputs: Row) -> Any:
        kind = KINDS.get(manifest.kind)
        schema = schemas.merge_schemas(kind.schema if kind else {}, manifest.inputs_schema or {})
        validated, problems = schemas.validate_instance(schema, inputs, "inputs")
        if problems:
            raise errors.ValidationFailed(describe_problems(problems))
        if not manifest.inputs_bindings:
            return validated
        binding = bindings.compile_binding(manifest.inputs_bindings, variables=["pkg"])
        return binding.evaluate({"pkg": {"inputs": validated}})

    def _entity_attributes(self, manifest: Manifest, name: str, resolved: dict[str, Any]) -> Row:
        spec = manifest.entities[name]
        entity_type = ENTITY_TYPES[spec.type]
        binding = bindings.compile_binding(spec.bindings, variables=["entities"])
        # Only what the expression mentions goes into its activation: a 10,000-entity graph would otherwise
        # convert every resolved entity for every step.
        wanted = bindings.referenced_entities(spec.bindings) | {"inputs"}
        activation = {"entities": {key: resolved[key] for key in wanted if key in resolved}}
        value = binding.evaluate(activation)
        if not isinstance(value, dict):
            raise errors.ValidationFailed(f"bindings must produce a map, got {type(value).__name__}")
        _, problems = schemas.validate_instance(entity_type.schema, value, f"entities.{name}")
        if problems:
            raise errors.ValidationFailed(describe_problems(problems))
        return value

    def _outputs(self, manifest: Manifest, resolved: dict[str, Any]) -> Row:
        if not manifest.outputs_bindings:
            return {}
        binding = bindings.compile_binding(manifest.outputs_bindings, variables=["entities"])
        wanted = bindings.referenced_entities(manifest.outputs_bindings) | {"inputs"}
        value = binding.evaluate({"entities": {key: resolved[key] for key in wanted if key in resolved}})
        if not isinstance(value, dict):
            raise errors.ValidationFailed(f"output bindings must produce a map, got {type(value).__name__}")
        _, problems = schemas.validate_instance(manifest.outputs_schema or {}, value, "outputs")
        if problems:
            raise errors.ValidationFailed(describe_problems(problems))
        return value

    def _create_step(self, name: str, type_name: str, attributes: Row, position: int) -> Row:
        entity_type = ENTITY_TYPES[type_name]
        identifier = str(attributes["identifier"])
        public = {k: v for k, v in attributes.items() if k not in entity_type.write_only}
        secret = {k: v for k, v in attributes.items() if k in entity_type.write_only}
        now = now_ms()
        with self.db.write() as conn:
            self._guard(conn, now)
            existing = entity_store.by_natural_key(conn, self.zone_id, type_name, identifier, lock=True)
            if existing is None:
                row: Row = {
                    "id": new_id("ent", now),
                    "organization_id": self.task["organization_id"],
                    "zone_id": self.zone_id,
                    "type": type_name,
                    "identifier": identifier,
                    "slug": slugify(str(attributes.get("name") or identifier))[:63],
                    "attributes": public,
                    "secret_attributes": secret,
                    "managed": True,
                    "created_by_install_id": self.install_id,
                    "created_by_task_id": self.task_id,
                    "created_at_ms": now,
                    "updated_at_ms": now,
                }
                try:
                    with conn.begin_nested():
                        entity_store.insert_entity(conn, row)
                    role = "created"
                except sa.exc.IntegrityError:
                    # Another install's transaction created it first (PostgreSQL): use theirs.
                    existing = entity_store.by_natural_key(conn, self.zone_id, type_name, identifier, lock=True)
                    if existing is None:
                        raise
            if existing is not None:
                row = existing
                role = "shared" if existing["managed"] else "adopted"
            entity_store.insert_use(
                conn,
                {
                    "install_id": self.install_id,
                    "local_name": name,
                    "entity_id": row["id"],
                    "zone_id": self.zone_id,
                    "role": role,
                    "task_id": self.task_id,
                    "position": position,
                    "created_at_ms": now,
                },
            )
            self._event(
                conn,
                now,
                "step_done",
                local_name=name,
                entity_type=type_name,
                action=role,
                entity_id=row["id"],
                href=entity_href(row),
                message=f"{type_name} {identifier} {role}",
            )
        return row

    # -- failure and rollback ------------------------------------------------------------------------------

    def fail_and_roll_back(self, name: str | None, type_name: str | None, cause: str) -> None:
        if name is not None:
            message = f"entity '{name}' ({type_name}) failed: {cause}"
        else:
            message = cause
        now = now_ms()
        with self.db.write() as conn:
            self._guard(conn, now)
            task_store.update_owned(conn, self.task_id, self.worker_id, now, phase="rollback", error_message=message)
            self._event(conn, now, "step_failed", local_name=name, entity_type=type_name, message=message)
        log.info("task rolling back", extra={"task_id": self.task_id, "error": message})
        self._rollback()

    def _rollback(self) -> None:
        with self.db.read() as conn:
            uses = entity_store.uses_of_install(conn, self.install_id)
        for use in reversed(uses):
            self._checkpoint()
            self._release(use, "rolled_back", "released")
        with self.db.read() as conn:
            task = task_store.task_by_id(conn, self.task_id)
        error_message = (task or {}).get("error_message") or "the task failed"
        self.finish("failed", "failed", ("pending",), error_message=error_message)

    def _release(self, use: Row, removed: str, kept: str) -> None:
        """Drop the install's use of one entity; delete the entity if the catalog made it and nobody uses it."""
        now = now_ms()
        with self.db.write() as conn:
            self._guard(conn, now)
            entity = entity_store.get_entity(conn, self.zone_id, use["entity_id"], lock=True)
            entity_store.delete_use(conn, self.install_id, use["local_name"])
            assert entity is not None  # entity_uses.entity_id is a foreign key
            others = entity_store.other_users(conn, entity["id"], self.install_id)
            if entity["managed"] and not others:
                entity_store.delete_entity(conn, entity["id"])
                action, message = removed, f"{entity['type']} {entity['identifier']} deleted"
            else:
                action = kept
                if entity["managed"]:
                    message = f"{entity['type']} {entity['identifier']} kept: still used by install {others[0]}"
                else:
                    message = f"{entity['type']} {entity['identifier']} kept: not created by the catalog"
            self._event(
                conn,
                now,
                "step_done",
                local_name=use["local_name"],
                entity_type=entity["type"],
                action=action,
                entity_id=entity["id"],
                href=entity_href(entity),
                message=message,
            )

    # -- delete --------------------------------------------------------------------------------------------

    def _delete(self) -> None:
        with self.db.read() as conn:
            uses = entity_store.uses_of_install(conn, self.install_id)
        for use in reversed(uses):
            self._checkpoint()
            now = now_ms()
            with self.db.write() as conn:
                self._guard(conn, now)
                self._event(conn, now, "step_started", local_name=use["local_name"])
            self._release(use, "deleted", "preserved")
        self.finish("completed", "deleted", ("deleting",))

    # -- end -----------------------------------------------------------------------------------------------

    def finish(self, task_status: str, install_status: str, expected: tuple[str, ...], **changes: Any) -> None:
        now = now_ms()
        outputs = changes.pop("outputs", None)
        with self.db.write() as conn:
            self._guard(conn, now)
            task_store.update_owned(
                conn, self.task_id, self.worker_id, now, status=task_status, locked_until_ms=None, **changes
            )
            install_changes: Row = {}
            if outputs is not None:
                install_changes["outputs"] = outputs
            moved = install_store.move_install(conn, self.install_id, expected, install_status, now, **install_changes)
            if not moved:
                raise errors.Conflict(f"install {self.install_id} was not in {expected} when its task finished")
            self._event(conn, now, "status", status=task_status, message=changes.get("error_message"))
        log.info(
            "task finished",
            extra={"task_id": self.task_id, "install_id": self.install_id, "status": task_status},
        )
