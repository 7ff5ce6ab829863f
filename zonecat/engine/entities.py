"""The typed entity collections: entities created here are unmanaged, and installs adopt them."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.clock import now_ms
from zonecat.domain import bindings, schemas
from zonecat.domain.entity_types import EntityType
from zonecat.domain.manifest import slugify
from zonecat.engine.access import Principal, held_zone
from zonecat.ids import new_id
from zonecat.store import entities as entity_store
from zonecat.store.database import Database
from zonecat.store.secrets import SecretUnreadable

Row = dict[str, Any]

log = logging.getLogger("zonecat.entities")


def _validated(entity_type: EntityType, attributes: object) -> Row:
    if not isinstance(attributes, dict):
        raise errors.ValidationFailed("the body must be a JSON object", [errors.Detail("body", "must be an object")])
    validated, problems = schemas.validate_instance(entity_type.schema, attributes, "")
    if problems:
        raise errors.ValidationFailed(
            f"the {entity_type.name} is not valid", [errors.Detail(p.field.lstrip("."), p.message) for p in problems]
        )
    assert isinstance(validated, dict)
    # An install that adopts the entity reads its attributes in bindings (``entities.x.outputs``), which hold no
    # integer outside CEL's range: refused here, not by the failed task of some later install.
    unreadable = bindings.integers_out_of_range(validated, "")
    if unreadable:
        raise errors.ValidationFailed(
            f"the {entity_type.name} holds integers that bindings cannot read",
            [errors.Detail(p.field, p.message) for p in unreadable],
        )
    return validated


def _split(entity_type: EntityType, attributes: Row) -> tuple[Row, Row]:
    public = {k: v for k, v in attributes.items() if k not in entity_type.write_only}
    secret = {k: v for k, v in attributes.items() if k in entity_type.write_only}
    return public, secret


def _duplicate(entity_type: EntityType, identifier: str, existing_id: str) -> errors.Conflict:
    return errors.Conflict(
        f"a {entity_type.name} with identifier '{identifier}' already exists in this zone ({existing_id})",
        [errors.Detail("identifier", f"already used by {existing_id}", "conflict")],
    )


def create_entity(db: Database, principal: Principal, zone_id: str, entity_type: EntityType, body: object) -> Row:
    attributes = _validated(entity_type, body)
    public, secret = _split(entity_type, attributes)
    identifier = str(attributes["identifier"])
    now = now_ms()
    row: Row = {
        "id": new_id("ent", now),
        "organization_id": principal.organization_id,
        "zone_id": zone_id,
        "type": entity_type.name,
        "identifier": identifier,
        "slug": slugify(str(attributes.get("name") or identifier))[:63],
        "attributes": public,
        "secret_attributes": secret,
        "managed": False,
        "created_by_install_id": None,
        "created_by_task_id": None,
        "created_at_ms": now,
        "updated_at_ms": now,
    }
    with db.write() as conn:
        held_zone(conn, principal, zone_id)
        existing = entity_store.by_natural_key(conn, zone_id, entity_type.name, identifier)
        if existing is not None:
            raise _duplicate(entity_type, identifier, existing["id"])
        try:
            with conn.begin_nested():
                entity_store.insert_entity(conn, row)
        except sa.exc.IntegrityError as exc:
            raise _duplicate(entity_type, identifier, "a concurrent request") from exc
    return row


def get_typed(conn: sa.Connection, zone_id: str, entity_type: EntityType, entity_id: str, lock: bool = False) -> Row:
    row = entity_store.get_entity(conn, zone_id, entity_id, lock=lock)
    if row is None or row["type"] != entity_type.name:
        raise errors.NotFound(f"{entity_type.name} {entity_id} not found")
    return row


def _in_use(conn: sa.Connection, row: Row, verb: str) -> None:
    users = sorted({use["install_id"] for use in entity_store.uses_of_entity(conn, row["id"])})
    if users:
        raise errors.Conflict(
            f"{row['type']} {row['id']} is used by install {', '.join(users)} and cannot be {verb}; uninstall first",
            [errors.Detail("id", f"used by {', '.join(users)}", "conflict")],
        )


def update_entity(
    db: Database, principal: Principal, zone_id: str, entity_type: EntityType, entity_id: str, body: object
) -> Row:
    if not isinstance(body, dict):
        raise errors.ValidationFailed("the body must be a JSON object", [errors.Detail("body", "must be an object")])
    now = now_ms()
    with db.write() as conn:
        row = get_typed(conn, zone_id, entity_type, entity_id, lock=True)
        if row["managed"]:
            _in_use(conn, row, "changed")
        merged = {**row["attributes"], **_kept_secrets(db, entity_type, row, body), **body}
        merged = {k: v for k, v in merged.items() if v is not None}
        attributes = _validated(entity_type, merged)
        identifier = str(attributes["identifier"])
        if identifier != row["identifier"]:
            existing = entity_store.by_natural_key(conn, zone_id, entity_type.name, identifier)
            if existing is not None:
                raise _duplicate(entity_type, identifier, existing["id"])
        public, secret = _split(entity_type, attributes)
        changes = {
            "identifier": identifier,
            "attributes": public,
            "secret_attributes": secret,
            "slug": slugify(str(attributes.get("name") or identifier))[:63],
            "updated_at_ms": now,
        }
        entity_store.update_entity(conn, row["id"], changes)
        row.update(changes)
    return row


def _kept_secrets(db: Database, entity_type: EntityType, row: Row, body: Row) -> Row:
    """The stored write-only values a PATCH keeps (those its body does not name), opened only when there can be
    any: a PATCH that replaces every one of them works even where the stored ones cannot be opened (another key).
    What is kept is decided from the opened value, not from the names stored in clear beside it (a display hint
    no key authenticates)."""
    stored = row["secret_attributes"]
    if not stored or entity_type.write_only <= body.keys():
        return {}
    try:
        opened = entity_store.unseal_secret_attributes(db.engine.dialect, stored)
    except SecretUnreadable as exc:
        # Sealed with another key (or damaged): what the PATCH would keep is lost to this server. The client can
        # still replace it; the operator learns why from the log (the key ids are not the client's business). A
        # body that is invalid anyway is told so first, as it would be with the value opened.
        _validated(entity_type, {k: v for k, v in {**row["attributes"], **body}.items() if v is not None})
        names = ", ".join(sorted(entity_type.write_only - body.keys()))
        log.warning("a stored write-only value cannot be opened", extra={"entity_id": row["id"], "error": str(exc)})
        raise errors.Conflict(
            f"the stored {names} of {entity_type.name} {row['id']} cannot be opened with this server's secret key; "
            f"send {names} to replace it",
            [
                errors.Detail(name, "stored value cannot be opened; send a new one", "conflict")
                for name in sorted(entity_type.write_only - body.keys())
            ],
        ) from exc
    return {k: v for k, v in opened.items() if k not in body}


def delete_entity(db: Database, principal: Principal, zone_id: str, entity_type: EntityType, entity_id: str) -> None:
    with db.write() as conn:
        row = get_typed(conn, zone_id, entity_type, entity_id, lock=True)
        _in_use(conn, row, "deleted")
        entity_store.delete_entity(conn, row["id"])
