"""Read representations shared by the provisioner (entity outputs seen by bindings) and the API."""

from __future__ import annotations

from typing import Any

from zonecat.clock import rfc3339
from zonecat.domain.entity_types import ENTITY_TYPES, read_attributes

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
    attributes = read_attributes(entity_type, {**row["attributes"], **row["secret_attributes"]})
    body.update(attributes)
    return body
