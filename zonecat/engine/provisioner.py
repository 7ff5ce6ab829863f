"""Runs one claimed catalog task to its end (design §6).

Entity steps are written in transactions that change the entity, record the install's use of it, append the
step's events (its intent, ahead of the change, and its outcome) and renew the lease, guarded by the owner. A step
is therefore wholly done or not at all, and a worker that lost its lease writes nothing. A resumed task skips every
local name that already has a use row.

Commit granularity: consecutive steps share one transaction, up to ``BATCH_SECONDS`` of work, and the task's end
joins the last of them; a 3-entity install is one transaction after its claim. Their bindings and schemas are
evaluated before the transaction begins (``_plan``), each step as if the ones before it created their entities,
which they usually do; a step that finds its entity already there ends its batch and the next steps are evaluated
again. No other writer therefore waits on SQLite's write lock for a CEL evaluation or a schema validation.

The entity lifecycle rule, applied after every removal of a use: a *managed* entity (created by the catalog)
lives while some install uses it; an *unmanaged* one (created through the typed collections) is never deleted
by the catalog.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.clock import now_ms, rfc3339
from zonecat.domain import bindings, schemas
from zonecat.domain.entity_types import ENTITY_TYPES
from zonecat.domain.manifest import Manifest, slugify
from zonecat.domain.problems import Problem
from zonecat.engine.released import RELEASED
from zonecat.engine.views import entity_href, entity_read
from zonecat.ids import new_id
from zonecat.store import entities as entity_store
from zonecat.store import installs as install_store
from zonecat.store import packages as package_store
from zonecat.store import tasks as task_store
from zonecat.store.database import Database
from zonecat.store.prepared import Answer, answered_together

Row = dict[str, Any]
# The answers of a task's end, unread: journaled and ended, install moved, next task claimed (see TaskRun._send_end).
_End = tuple[Answer[bool], Answer[bool], Answer[Row | None] | None]
log = logging.getLogger("zonecat.task")

MAX_ATTEMPTS = 10
# A rollback is resumed as often as it takes, up to this many attempts of its task in all (a create's own attempts
# included): then it is abandoned, the task ends failed, and deleting the install removes what is left.
MAX_ROLLBACK_ATTEMPTS = 2 * MAX_ATTEMPTS
BATCH_SECONDS = 0.005  # the longest a batch of steps holds the write lock (SQLite) before it commits
CHEAP_BINDING_BYTES = 2048


def _cheap(source: str) -> bool:
    """May this expression be evaluated while a write transaction is open? No loops and a short source bound
    its cost (bindings.py: without comprehensions every operation is applied a fixed number of times)."""
    if len(source) > CHEAP_BINDING_BYTES:
        return False
    try:
        binding = bindings.compile_binding(source, variables=["entities"])
    except errors.ZonecatError:
        return False
    return not binding.uses_comprehensions


class Interrupted(Exception):
    """The worker is shutting down: the task stops between steps and is resumed later."""


class _PlanVoided(Exception):
    """A batch written as planned found an entity already there: its transaction is rolled back."""


def describe_problems(problems: list[Problem]) -> str:
    return "; ".join(f"{p.field}: {p.message}" for p in problems)


class TaskRun:
    """One execution of one claimed task by one worker."""

    def __init__(
        self,
        db: Database,
        task: Row,
        worker_id: str,
        lease_ms: int,
        should_stop: Callable[[], bool],
        claim_next: Callable[[sa.Connection], Answer[Row | None]] | None = None,
        install: Row | None = None,
    ) -> None:
        """``claim_next``, when given, claims the worker's next task inside the transaction that ends this one
        (one write transaction fewer per task while tasks are waiting); the claimed task is ``next_task`` once that
        transaction has committed. ``install``: the task's install as its claim read it, write-only inputs sealed
        (``tasks.claim_announced``), or None to read it here."""
        self.db = db
        self.task = task
        self.task_id: str = task["id"]
        self.zone_id: str = task["zone_id"]
        self.install_id: str = task["install_id"]
        self.worker_id = worker_id
        self.lease_ms = lease_ms
        self.should_stop = should_stop
        self.claim_next = claim_next
        self.next_task: Row | None = None
        self._claimed: Row | None = None  # by the ending transaction, until it commits
        self._install = install

    # -- transactions --------------------------------------------------------------------------------------

    def _journal(self, conn: sa.Connection, now: int, *events: Row) -> None:
        """Renew the lease and append the events inside the current transaction; abort the transaction if
        another worker owns the task now (its lease expired), so this one writes nothing at all."""
        if not task_store.journal(conn, self.task_id, self.worker_id, now, self.lease_ms, list(events)):
            raise errors.LeaseLost()

    @staticmethod
    def _intent(name: str, type_name: str | None) -> Row:
        """The write-ahead event of a step, journaled in the transaction of the step before it (or of its own)."""
        return {"kind": "step_started", "local_name": name, "entity_type": type_name}

    def _checkpoint(self) -> None:
        if self.should_stop():
            raise Interrupted()

    # -- entry ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        if self.task["attempts"] > MAX_ATTEMPTS and self.task["phase"] == "apply":
            self._give_up()
            return
        if self.task["attempts"] > MAX_ROLLBACK_ATTEMPTS and self.task["phase"] == "rollback":
            self._abandon_rollback()
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
            self.end_failed(("deleting",), message)

    def _abandon_rollback(self) -> None:
        """A rollback that was interrupted or failed at every attempt: the task ends failed instead of being resumed
        for ever, and says what may be left (a delete of the install removes it)."""
        message = (
            f"{self._recorded_error()}; its rollback was abandoned after {self.task['attempts'] - 1} attempts: "
            "entities it created may remain until the install is deleted"
        )
        self.end_failed(("pending",), message)

    def end_failed(self, expected: tuple[str, ...], message: str) -> None:
        """End the task failed and move its install to ``failed``; when the install is not in ``expected`` (or
        gone: nothing left to move), end the task alone, rather than fail to end it at every attempt."""
        try:
            self.finish("failed", "failed", expected, error_message=message)
        except errors.Conflict:
            log.warning(
                "install not in an expected status; its task ends alone",
                extra={"task_id": self.task_id, "install_id": self.install_id, "expected": list(expected)},
            )
            self._end_task_alone("failed", message)

    def _end_task_alone(self, task_status: str, message: str) -> None:
        with self.db.write() as conn:
            with answered_together(conn):
                ended = self._send_task_end(conn, now_ms(), task_status, [], error_message=message)
            if not ended.get():
                raise errors.LeaseLost()
        self._finished(task_status)

    # -- create --------------------------------------------------------------------------------------------

    def _load(self) -> tuple[Row, Manifest]:
        # The install as the claim read it (what a create task uses of it, its version and inputs, never changes),
        # else one statement; its version's manifest only on a cache miss (versions never change once released).
        # Either way the write-only inputs come sealed, and are opened here, by the one task that uses them.
        install = self._install
        if install is None:
            with self.db.read_statement() as conn:
                install = install_store.sealed_install_by_id(conn, self.install_id)
            if install is None:
                raise errors.NotFound(f"install {self.install_id} vanished")
        manifest = RELEASED.get(install["version_id"])
        if manifest is None:
            with self.db.read_statement() as conn:
                version = package_store.find_version(conn, install["package_id"], install["version_id"])
            if version is None:
                raise errors.NotFound(f"package version {install['version_id']} vanished")
            manifest = Manifest.from_raw(version["manifest"])
            RELEASED.put(install["version_id"], manifest)
        opened = install_store.unseal_secret_inputs(self.db.engine.dialect, install["secret_inputs"])
        return {**install, "secret_inputs": opened}, manifest

    def _create(self) -> None:
        install, manifest = self._load()
        inputs = {**install["inputs"], **install["secret_inputs"]}
        try:
            entity_inputs = self._entity_inputs(manifest, inputs)
        except errors.ZonecatError as exc:
            self.fail_and_roll_back(None, None, f"input bindings: {exc.message}")
            return
        done: dict[str, Row] = {}
        entity_rows: dict[str, Row] = {}
        if self.task["attempts"] > 1:  # only an earlier attempt of this very task can have written uses
            with self.db.read() as conn:
                done = {use["local_name"]: use for use in entity_store.uses_of_install(conn, self.install_id)}
                entity_rows = entity_store.entities_by_ids(conn, [use["entity_id"] for use in done.values()])
        resolved: dict[str, Any] = {"inputs": entity_inputs}
        for name, use in done.items():
            row = entity_rows[use["entity_id"]]
            resolved[name] = {"href": entity_href(row), "outputs": entity_read(row)}
        order = manifest.order()
        todo = [(position, name) for position, name in enumerate(order) if name not in done]
        index = 0
        planned: list[Row] = []  # rows evaluated ahead of their transaction, for todo[index:]
        outputs: Row | None = None  # evaluated with the plan that reached the last step, while that plan holds
        as_sent = not self.db.is_sqlite  # the next batch is first tried in one round trip (see _batch_as_planned)
        while index < len(todo):
            self._checkpoint()
            if not planned:
                planned, failure, outputs = self._plan(manifest, todo, index, resolved)
                if not planned:
                    assert failure is not None
                    name = todo[index][1]
                    self.fail_and_roll_back(name, manifest.entities[name].type, failure.message)
                    return
            if as_sent:
                try:
                    with self.db.write() as conn:
                        ended = self._batch_as_planned(conn, manifest, todo, index, planned, outputs)
                except _PlanVoided:
                    # Rolled back. The rest of the task runs step by step: a package whose entities are found
                    # (shared, adopted) would otherwise send and roll back one batch per entity found.
                    as_sent = False
                    continue
                index += len(planned)
                planned = []
                if ended:
                    self._finished("completed")
                    return
                continue
            with self.db.write() as conn:
                written, events, as_planned = self._create_batch(conn, manifest, todo, index, planned, resolved)
                index += written
                # A step that found its entity already there voids the plans after it: they are made again.
                planned = planned[written:] if as_planned else []
                outputs = outputs if as_planned else None
                # The last batch also ends the task when it can: its events and the end share one guarded write.
                ended = index == len(todo) and self._finish_create(conn, manifest, resolved, events, outputs)
                if not ended:
                    self._journal(conn, now_ms(), *events)
            if ended:
                self._finished("completed")
                return
        self._checkpoint()
        with self.db.write() as conn:
            ended = self._finish_create(conn, manifest, resolved, [], None, cheap_only=False)
        if ended:
            self._finished("completed")
            return
        # The outputs failed: nothing of the end was written.
        try:
            self._outputs(manifest, resolved)
        except errors.ZonecatError as exc:
            self.fail_and_roll_back(None, None, f"outputs: {exc.message}")

    def _plan(
        self, manifest: Manifest, todo: list[tuple[int, str]], index: int, resolved: dict[str, Any]
    ) -> tuple[list[Row], errors.ZonecatError | None, Row | None]:
        """Evaluate the steps from ``todo[index]`` on, outside any transaction, for up to ``BATCH_SECONDS``: the
        entity row of each, as if every step before it created its entity (the usual case; ``_create_batch`` stops
        where one did not). Each planned row goes into ``resolved`` for the steps after it.

        Returns the planned rows, the error of the step that failed to evaluate (which ends the plan), and the
        task's outputs when the plan reaches the last step (None if they fail: they are evaluated again at the end).
        No binding or schema is therefore evaluated while a write transaction is open."""
        now = now_ms()
        deadline = time.monotonic() + BATCH_SECONDS
        planned: list[Row] = []
        for position in range(index, len(todo)):  # not todo[index:]: a copy of the rest per batch is O(n^2) in all
            name = todo[position][1]
            try:
                attributes = self._entity_attributes(manifest, name, resolved)
            except errors.ZonecatError as exc:
                return planned, exc, None
            row = self._entity_row(now, manifest.entities[name].type, attributes)
            planned.append(row)
            resolved[name] = {"href": entity_href(row), "outputs": entity_read(row)}
            if time.monotonic() > deadline:
                break
        outputs: Row | None = None
        if index + len(planned) == len(todo):
            try:
                outputs = self._outputs(manifest, resolved)
            except errors.ZonecatError:
                outputs = None
        return planned, None, outputs

    def _create_batch(
        self,
        conn: sa.Connection,
        manifest: Manifest,
        todo: list[tuple[int, str]],
        index: int,
        planned: list[Row],
        resolved: dict[str, Any],
    ) -> tuple[int, list[Row], bool]:
        """Write planned steps (``planned[k]`` is ``todo[index + k]``) in ``conn``, for up to ``BATCH_SECONDS``;
        return how many were written, the events for the caller to journal in ``conn``, and whether each created
        its entity as planned. A step that found its entity already there (adopted or shared) ends the batch: the
        plans after it assumed otherwise."""
        now = now_ms()
        deadline = time.monotonic() + BATCH_SECONDS
        events: list[Row] = self._first_intent(manifest, todo, index)
        for written, row in enumerate(planned, start=1):
            position, name = todo[index]
            found, step_events = self._create_step(
                conn, now, name, row, position, *self._following(manifest, todo, index)
            )
            events += step_events
            index += 1
            if found is not row:
                resolved[name] = {"href": entity_href(found), "outputs": entity_read(found)}
                return written, events, False
            if time.monotonic() > deadline:
                return written, events, True
        return len(planned), events, True

    def _batch_as_planned(
        self,
        conn: sa.Connection,
        manifest: Manifest,
        todo: list[tuple[int, str]],
        index: int,
        planned: list[Row],
        outputs: Row | None,
    ) -> bool:
        """PostgreSQL: write a whole plan's steps as if each created its entity, which they usually do, together with
        their journal or, when the plan reaches the last step with its outputs, the task's end (and the claim of the
        worker's next task): one round trip, then the COMMIT. True when the task ended.

        Raises ``_PlanVoided`` when a step found its natural key taken: everything sent is then rolled back with the
        transaction (the claim included), and the caller writes the rest of the task step by step
        (``_create_batch``), which adopts or shares that entity and evaluates the steps after it again."""
        now = now_ms()
        count = len(planned)
        ends = index + count == len(todo) and outputs is not None
        events = self._first_intent(manifest, todo, index)
        for offset, row in enumerate(planned):
            name = todo[index + offset][1]
            events += self._step_events(name, row, "created", *self._following(manifest, todo, index + offset))
        end: _End | None = None
        journaled: Answer[bool] | None = None
        with answered_together(conn):
            created = [
                entity_store.insert_entity_with_use_later(conn, row, self._use_row(name, position, now))
                for row, (position, name) in zip(planned, todo[index : index + count], strict=True)
            ]
            if ends:
                end = self._send_end(conn, now, "completed", "active", ("pending",), events, outputs=outputs)
            else:
                journaled = task_store.journal_later(conn, self.task_id, self.worker_id, now, self.lease_ms, events)
        # A lost lease or an install that moved comes first, as it would step by step.
        if end is not None:
            self._check_end(end, ("pending",))
        elif journaled is not None and not journaled.get():
            raise errors.LeaseLost()
        if not all(answer.get() for answer in created):
            self._claimed = None  # rolled back with the rest
            raise _PlanVoided()
        return ends

    def _first_intent(self, manifest: Manifest, todo: list[tuple[int, str]], index: int) -> list[Row]:
        """The write-ahead event of the task's first step, written with the batch that starts the task."""
        if index != 0:
            return []
        first = todo[0][1]
        return [self._intent(first, manifest.entities[first].type)]

    @staticmethod
    def _following(manifest: Manifest, todo: list[tuple[int, str]], index: int) -> tuple[str | None, str | None]:
        """The step after ``todo[index]`` and its type: its intent is written with ``todo[index]``, still ahead of
        it."""
        if index + 1 >= len(todo):
            return None, None
        following = todo[index + 1][1]
        return following, manifest.entities[following].type

    def _finish_create(
        self,
        conn: sa.Connection,
        manifest: Manifest,
        resolved: dict[str, Any],
        events: list[Row],
        outputs: Row | None,
        cheap_only: bool = True,
    ) -> bool:
        """End the task in ``conn`` with ``outputs`` (evaluated here when None), journaling ``events`` first; False
        (nothing written, ``events`` included) when the outputs are to be evaluated but their bindings are not cheap
        (``cheap_only``), or they fail."""
        if outputs is None:
            if cheap_only and manifest.outputs_bindings and not _cheap(manifest.outputs_bindings):
                return False
            try:
                outputs = self._outputs(manifest, resolved)
            except errors.ZonecatError:
                return False
        self._finish_in(conn, now_ms(), "completed", "active", ("pending",), events=events, outputs=outputs)
        return True

    def _entity_inputs(self, manifest: Manifest, inputs: Row) -> Any:
        schema = RELEASED.input_schema(manifest)
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

    def _entity_row(self, now: int, type_name: str, attributes: Row) -> Row:
        """The row of the entity a step creates, unless its natural key is taken."""
        entity_type = ENTITY_TYPES[type_name]
        identifier = str(attributes["identifier"])
        return {
            "id": new_id("ent", now),
            "organization_id": self.task["organization_id"],
            "zone_id": self.zone_id,
            "type": type_name,
            "identifier": identifier,
            "slug": slugify(str(attributes.get("name") or identifier))[:63],
            "attributes": {k: v for k, v in attributes.items() if k not in entity_type.write_only},
            "secret_attributes": {k: v for k, v in attributes.items() if k in entity_type.write_only},
            "managed": True,
            "created_by_install_id": self.install_id,
            "created_by_task_id": self.task_id,
            "created_at_ms": now,
            "updated_at_ms": now,
        }

    def _use_row(self, name: str, position: int, now: int) -> Row:
        """The install's use of the entity a step makes, but for the entity's id and role."""
        return {
            "install_id": self.install_id,
            "local_name": name,
            "zone_id": self.zone_id,
            "task_id": self.task_id,
            "position": position,
            "created_at_ms": now,
        }

    def _step_events(self, name: str, row: Row, role: str, following: str | None, next_type: str | None) -> list[Row]:
        """A step's outcome event, and the intent of the step after it."""
        events: list[Row] = [
            {
                "kind": "step_done",
                "local_name": name,
                "entity_type": row["type"],
                "action": role,
                "entity_id": row["id"],
                "href": entity_href(row),
                "message": f"{row['type']} {row['identifier']} {role}",
            }
        ]
        if following is not None:
            events.append(self._intent(following, next_type))
        return events

    def _create_step(
        self,
        conn: sa.Connection,
        now: int,
        name: str,
        planned: Row,
        position: int,
        following: str | None,
        next_type: str | None,
    ) -> tuple[Row, list[Row]]:
        """Create the planned entity, or find the one holding its natural key, and record the install's use of it;
        returns the entity's row (``planned`` itself when it was created) and the step's events (for the caller to
        journal in the same transaction)."""
        use = self._use_row(name, position, now)
        if entity_store.insert_entity_with_use(conn, planned, use):
            row, role = planned, "created"  # the usual case: one statement on PostgreSQL
        else:
            row, role = self._find_or_insert(conn, planned)
            entity_store.insert_use(conn, {**use, "entity_id": row["id"], "role": role})
        return row, self._step_events(name, row, role, following, next_type)

    def _find_or_insert(self, conn: sa.Connection, row: Row) -> tuple[Row, str]:
        """After an insert found the natural key taken: use the entity that holds it (an unmanaged entity is
        adopted, a catalog-made one shared), or create the entity if it vanished since. The found row is locked so
        that a concurrent release of its last use cannot delete it under us (PostgreSQL); if it vanished between
        the two statements, try again."""
        for _ in range(3):
            existing = entity_store.by_natural_key(conn, self.zone_id, row["type"], row["identifier"], lock=True)
            if existing is not None:
                return existing, "shared" if existing["managed"] else "adopted"
            if entity_store.insert_entity_if_absent(conn, row):
                return row, "created"
        raise errors.Conflict(f"{row['type']} {row['identifier']} keeps changing concurrently")

    # -- failure and rollback ------------------------------------------------------------------------------

    def fail_and_roll_back(self, name: str | None, type_name: str | None, cause: str) -> None:
        if name is not None:
            message = f"entity '{name}' ({type_name}) failed: {cause}"
        else:
            message = cause
        now = now_ms()
        with self.db.write() as conn:
            self._journal(
                conn, now, {"kind": "step_failed", "local_name": name, "entity_type": type_name, "message": message}
            )
            task_store.update_owned(conn, self.task_id, self.worker_id, now, phase="rollback", error_message=message)
        log.info("task rolling back", extra={"task_id": self.task_id, "error": message})
        self._rollback()

    def _rollback(self) -> None:
        self._release_all("rolled_back", "released")
        self.end_failed(("pending",), self._recorded_error())

    def _recorded_error(self) -> str:
        """The error the task recorded when it failed (``fail_and_roll_back``), which its end repeats."""
        with self.db.read() as conn:
            task = task_store.task_by_id(conn, self.task_id)
        return str((task or {}).get("error_message") or "the task failed")

    def _release_all(self, removed: str, kept: str, end: Callable[[sa.Connection, int], None] | None = None) -> bool:
        """Release every entity the install uses, in reverse provisioning order, in batches of one transaction
        (``BATCH_SECONDS`` each). ``end`` runs in the last batch's transaction; True when it ran."""
        with self.db.read() as conn:
            uses = list(reversed(entity_store.uses_of_install(conn, self.install_id)))
            types = {
                k: v["type"] for k, v in entity_store.entities_by_ids(conn, [u["entity_id"] for u in uses]).items()
            }
        index = 0
        while index < len(uses):
            self._checkpoint()
            with self.db.write() as conn:
                now = now_ms()
                deadline = time.monotonic() + BATCH_SECONDS
                events: list[Row] = []
                if index == 0:
                    events.append(self._intent(uses[0]["local_name"], types.get(uses[0]["entity_id"])))
                while True:
                    following = uses[index + 1] if index + 1 < len(uses) else None
                    events += self._release(conn, now, uses[index], removed, kept, following, types)
                    index += 1
                    if following is None or time.monotonic() > deadline:
                        break
                self._journal(conn, now, *events)
                if index == len(uses) and end is not None:
                    end(conn, now)
                    return True
        return False

    def _release(
        self,
        conn: sa.Connection,
        now: int,
        use: Row,
        removed: str,
        kept: str,
        following: Row | None,
        types: dict[str, str],
    ) -> list[Row]:
        """Drop the install's use of one entity; delete the entity if the catalog made it and nobody uses it.
        Returns the step's events for the caller to journal in the same transaction."""
        entity = entity_store.get_entity(conn, self.zone_id, use["entity_id"], lock=True)
        assert entity is not None  # entity_uses.entity_id is a foreign key
        entity_store.delete_use(conn, self.install_id, use["local_name"])
        # Every remaining use counts, this install's other local names included.
        users = entity_store.remaining_uses(conn, entity["id"])
        label = f"{entity['type']} {entity['identifier']}"
        if entity["managed"] and not users:
            entity_store.delete_entity(conn, entity["id"])
            action, message = removed, f"{label} deleted"
        elif entity["managed"]:
            action, message = kept, f"{label} kept: still used by install {users[0]}"
        else:
            action, message = kept, f"{label} kept: not created by the catalog"
        events: list[Row] = [
            {
                "kind": "step_done",
                "local_name": use["local_name"],
                "entity_type": entity["type"],
                "action": action,
                "entity_id": entity["id"],
                "href": entity_href(entity),
                "message": message,
            }
        ]
        if following is not None:
            events.append(self._intent(following["local_name"], types.get(following["entity_id"])))
        if action == "preserved":
            self._warn_if_unplanned(conn, now, use["local_name"], entity, users)
        return events

    def _warn_if_unplanned(self, conn: sa.Connection, now: int, name: str, entity: Row, users: list[str]) -> None:
        """A delete preserves an entity its plan did not warn about when another install started using it after
        the DELETE was answered. The task's warnings then get the missing one, so that every preserved entity is
        named in a warning of its delete task (GET the task to see it)."""
        field = f"entities.{name}"
        warnings: list[Row] = list(self.task.get("warnings") or [])
        if any(detail.get("field") == field for warning in warnings for detail in warning.get("details", [])):
            return
        label = f"{entity['type']} '{entity['identifier']}' ({entity['id']})"
        if entity["managed"]:
            message = f"{label} is still used by install {users[0]} and was preserved"
        else:
            message = f"{label} was not created by the catalog and was preserved"
        warnings.append(
            {
                "code": "conflict",
                "status": 409,
                "message": message,
                "path": f"/zones/{self.zone_id}/installs/{self.install_id}",
                # Found while the task ran: no request of its own; a stable id derived from the task.
                "request_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"zonecat:{self.task_id}")),
                "timestamp": rfc3339(now),
                "details": [{"code": "conflict", "field": field, "message": message}],
            }
        )
        task_store.update_owned(conn, self.task_id, self.worker_id, now, warnings=warnings)
        self.task["warnings"] = warnings

    # -- delete --------------------------------------------------------------------------------------------

    def _delete(self) -> None:
        def end(conn: sa.Connection, now: int) -> None:
            self._finish_in(conn, now, "completed", "deleted", ("deleting",))

        if not self._release_all("deleted", "preserved", end):
            self.finish("completed", "deleted", ("deleting",))
        else:
            self._finished("completed")

    # -- end -----------------------------------------------------------------------------------------------

    def finish(self, task_status: str, install_status: str, expected: tuple[str, ...], **changes: Any) -> None:
        with self.db.write() as conn:
            self._finish_in(conn, now_ms(), task_status, install_status, expected, **changes)
        self._finished(task_status)

    def _finished(self, task_status: str) -> None:
        """Called once the transaction that ended the task has committed."""
        self.next_task, self._claimed = self._claimed, None
        log.info("task finished", extra={"task_id": self.task_id, "install_id": self.install_id, "status": task_status})

    def _finish_in(
        self,
        conn: sa.Connection,
        now: int,
        task_status: str,
        install_status: str,
        expected: tuple[str, ...],
        events: list[Row] | None = None,
        **changes: Any,
    ) -> None:
        """End the task and move its install, in ``conn``; ``events`` are journaled before the final status."""
        # On PostgreSQL the end goes out in one round trip, its answers read after: a refused one raises below and
        # the transaction rolls back with all of it (the claim of the next task included).
        with answered_together(conn):
            end = self._send_end(conn, now, task_status, install_status, expected, events, **changes)
        self._check_end(end, expected)

    def _send_end(
        self,
        conn: sa.Connection,
        now: int,
        task_status: str,
        install_status: str,
        expected: tuple[str, ...],
        events: list[Row] | None = None,
        **changes: Any,
    ) -> _End:
        """The statements of ``_finish_in``, their answers unread (see ``_check_end``)."""
        outputs = changes.pop("outputs", None)
        install_changes: Row = {}
        if outputs is not None:
            install_changes["outputs"] = outputs
        ended = self._send_task_end(conn, now, task_status, events or [], **changes)
        moved = install_store.move_install_later(
            conn, self.install_id, expected, install_status, now, **install_changes
        )
        claimed = self.claim_next(conn) if self.claim_next is not None else None
        return ended, moved, claimed

    def _send_task_end(
        self, conn: sa.Connection, now: int, task_status: str, events: list[Row], **changes: Any
    ) -> Answer[bool]:
        """One guarded statement that appends ``events`` and the final status event and ends the task (status,
        lease) while this worker owns it; its answer unread."""
        final = {"kind": "status", "status": task_status, "message": changes.get("error_message")}
        return task_store.journal_later(
            conn,
            self.task_id,
            self.worker_id,
            now,
            self.lease_ms,
            [*events, final],
            {"status": task_status, "locked_until_ms": None, "updated_at_ms": now, **changes},
        )

    def _check_end(self, end: _End, expected: tuple[str, ...]) -> None:
        """Raise (rolling the transaction back) unless the end sent by ``_send_end`` was written; note the task its
        transaction claimed."""
        ended, moved, claimed = end
        if not ended.get():
            raise errors.LeaseLost()
        if not moved.get():
            raise errors.Conflict(f"install {self.install_id} was not in {expected} when its task finished")
        self._claimed = claimed.get() if claimed is not None else None
