"""Read representations shared by the provisioner (entity outputs seen by bindings) and the API."""

from __future__ import annotations

from typing import Any

from zonecat.clock import rfc3339
from zonecat.domain.entity_types import ENTITY_TYPES, EntityType, read_attributes
from zonecat.store.secrets import names_set

Row = dict[str, Any]


def entity_href(row: Row) -> str:
    collection = ENTITY_TYPES[row["type"]].collection
    return f"/zones/{row['zone_id']}/{collection}/{row['id']}"


def entity_read(row: Row) -> dict[str, Any]:
    """Keycard's read shape of an entity: common fields plus its attributes, write-only values left out."""
    entity_type = ENTITY_TYPES[row["type"]]
    body: dict[str, Any] = {
        "id": row["id"],
        "organization_id": row["organization_id"],
        "zone_id": row["zone_id"],
        "slug": row["slug"],
        "owner_type": "platform" if row["managed"] else "customer",
        "created_at": rfc3339(row["created_at_ms"]),
        "updated_at": rfc3339(row["updated_at_ms"]),
    }
    body.update(read_attributes(entity_type, row["attributes"], write_only_set(entity_type, row["secret_attributes"])))
    return body


def write_only_set(entity_type: EntityType, secret_attributes: Any) -> frozenset[str]:
    """The write-only attributes set in an entity's ``secret_attributes`` as read: plain (just written) or sealed,
    which is not opened (``zonecat.store.entities.SEALED_COLUMNS``). A value sealed by a zonecat that did not keep
    the names beside it is reported as every write-only attribute of its type: a sealed value is never empty, and
    no type has more than one (``tests/unit/test_entity_types.py`` keeps it so)."""
    names = names_set(secret_attributes)
    return entity_type.write_only if names is None else names & entity_type.write_only
