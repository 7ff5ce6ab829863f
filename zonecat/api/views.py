"""JSON shapes of the API (Keycard's field names), built from store rows."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from zonecat.clock import rfc3339
from zonecat.domain import manifest as manifests
from zonecat.domain import schemas
from zonecat.engine.views import entity_href, entity_read
from zonecat.store import entities as entity_store
from zonecat.store import packages as package_store
from zonecat.store import tasks as task_store
from zonecat.store.paging import Page

Row = dict[str, Any]
JSON = dict[str, Any]


def page_body(page: Page, items: list[JSON]) -> JSON:
    pagination: JSON = {"after_cursor": page.after_cursor, "before_cursor": page.before_cursor}
    if page.total_count is not None:
        pagination["total_count"] = page.total_count
    return {"items": items, "pagination": pagination}


def typed_page_body(page: Page, items: list[JSON]) -> JSON:
    """Keycard's entity collections carry ``page_info`` beside ``pagination``."""
    body = page_body(page, items)
    body["page_info"] = {
        "has_next_page": page.after_cursor is not None,
        "has_previous_page": page.before_cursor is not None,
        "start_cursor": page.before_cursor,
        "end_cursor": page.after_cursor,
    }
    return body


def zone_view(row: Row) -> JSON:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "organization_id": row["organization_id"],
        "created_at": rfc3339(row["created_at_ms"]),
        "updated_at": rfc3339(row["updated_at_ms"]),
    }


def token_view(row: Row) -> JSON:
    return {
        "id": row["id"],
        "name": row["name"],
        "zones": row["zones"],
        "read_only": row["read_only"],
        "admin": row["admin"],
        "created_at": rfc3339(row["created_at_ms"]),
    }


def step_links(conn: sa.Connection | None, task_id: str, outcomes: list[Row] | None = None) -> list[JSON]:
    """One link per entity the task touched, with its latest action (design §6); reads the outcomes unless given."""
    if outcomes is None:
        assert conn is not None
        outcomes = task_store.step_outcomes(conn, task_id)
    latest: dict[str, Row] = {}
    for event in outcomes:
        latest.pop(event["local_name"], None)
        latest[event["local_name"]] = event
    return [
        {
            "href": event["href"],
            "rel": event["action"],
            "titles": {"en": event["local_name"]},
            "properties": {"local_name": event["local_name"], "type": event["entity_type"]},
        }
        for event in latest.values()
    ]


def task_views(conn: sa.Connection, rows: list[Row]) -> list[JSON]:
    """The views of a page of tasks, with the step outcomes of all of them read in one query."""
    outcomes = task_store.step_outcomes_of(conn, [row["id"] for row in rows])
    return [task_view(conn, row, outcomes.get(row["id"], [])) for row in rows]


def task_view(conn: sa.Connection | None, row: Row, outcomes: list[Row] | None = None) -> JSON:
    body: JSON = {
        "id": row["id"],
        "created_at": rfc3339(row["created_at_ms"]),
        "updated_at": rfc3339(row["updated_at_ms"]),
        "operation": row["operation"],
        "status": row["status"],
        "install_id": row["install_id"],
        "package_id": row["package_id"],
        "package_slug": row["package_slug"],
        "package_version": row["package_version"],
        "links": step_links(conn, row["id"], outcomes),
        "warnings": row["warnings"],
    }
    if row["error_message"] is not None:
        body["error_message"] = row["error_message"]
    return body


def event_view(row: Row) -> JSON:
    return {
        "seq": row["seq"],
        "task_id": row["task_id"],
        "created_at": rfc3339(row["created_at_ms"]),
        "kind": row["kind"],
        "status": row["status"],
        "local_name": row["local_name"],
        "entity_type": row["entity_type"],
        "action": row["action"],
        "entity_id": row["entity_id"],
        "href": row["href"],
        "message": row["message"],
    }


def install_links(conn: sa.Connection, install_id: str) -> list[JSON]:
    uses = entity_store.uses_of_install(conn, install_id)
    found = entity_store.entities_by_ids(conn, [use["entity_id"] for use in uses])
    return [
        {
            "href": entity_href(found[use["entity_id"]]),
            "rel": use["role"],
            "titles": {"en": use["local_name"]},
            "properties": {"local_name": use["local_name"], "type": found[use["entity_id"]]["type"]},
        }
        for use in uses
    ]


def _public_outputs(conn: sa.Connection, row: Row) -> Any:
    """The install's outputs without what the package's output schema marks ``writeOnly`` (never returned)."""
    version = package_store.find_version(conn, row["package_id"], row["version_id"])
    outputs_section = version["manifest"].get("outputs") if version is not None else None
    schema = outputs_section.get("schema") if isinstance(outputs_section, dict) else None
    if not isinstance(schema, dict):
        return row["outputs"]
    public, _ = schemas.strip_write_only(schema, row["outputs"])
    return public


def install_view(conn: sa.Connection, row: Row, with_links: bool = True) -> JSON:
    body: JSON = {
        "id": row["id"],
        "created_at": rfc3339(row["created_at_ms"]),
        "updated_at": rfc3339(row["updated_at_ms"]),
        "package_id": row["package_id"],
        "package_slug": row["package_slug"],
        "package_version": row["package_version"],
        "status": row["status"],
        "inputs": row["inputs"],
        "org_id": row["organization_id"],
        "zone_id": row["zone_id"],
    }
    if row["outputs"] is not None:
        body["outputs"] = _public_outputs(conn, row)
    if with_links:
        body["links"] = install_links(conn, row["id"])
    return body


def _manifest_fields(manifest: Row) -> JSON:
    body: JSON = {"name": manifest.get("name")}
    for key in ("description", "icon_url", "tags", "properties", "links"):
        if manifest.get(key) is not None:
            body[key] = manifest[key]
    inputs = manifest.get("inputs")
    if isinstance(inputs, dict):
        body["inputs"] = {k: inputs[k] for k in ("schema", "bindings") if k in inputs}
    outputs = manifest.get("outputs")
    if isinstance(outputs, dict):
        body["outputs"] = {k: outputs[k] for k in ("schema", "bindings") if k in outputs}
    return body


def version_view(row: Row) -> JSON:
    return {
        "id": row["id"],
        "package_id": row["package_id"],
        "version": row["version"],
        "manifest_sha": row["manifest_sha"],
        "owner_type": row["owner_type"],
        "created_at": rfc3339(row["created_at_ms"]),
        "archived_at": rfc3339(row["archived_at_ms"]),
        **_manifest_fields(row["manifest"]),
        "kind": row["manifest"].get("kind"),
        "manifest": row["manifest"],
    }


def draft_view(row: Row) -> JSON:
    return {
        "id": row["draft_id"],
        "manifest_sha": row["draft_sha"],
        "updated_at": rfc3339(row["draft_updated_at_ms"]),
        **_manifest_fields(row["draft_manifest"]),
        "kind": row["draft_manifest"].get("kind"),
        "manifest": row["draft_manifest"],
    }


def package_view(conn: sa.Connection, row: Row) -> JSON:
    current = package_store.current_version(conn, row["id"])
    manifest = current["manifest"] if current is not None else row["draft_manifest"]
    body: JSON = {
        "id": row["id"],
        "created_at": rfc3339(row["created_at_ms"]),
        "updated_at": rfc3339(row["updated_at_ms"]),
        "kind": manifest.get("kind", row["kind"]),
        "slug": row["slug"],
        **_manifest_fields(manifest),
        "current_version": version_view(current) if current is not None else None,
        "draft": draft_view(row),
        "source": {"scope": row["scope"]},
    }
    try:
        body["input_state"] = manifests.input_state(manifest)
    except Exception:  # a draft that does not pass release checks may not have a computable input state
        body["input_state"] = None
    if body["current_version"] is not None:
        body["current_version"].pop("manifest", None)
    return body


def entity_view(row: Row, uses: list[Row]) -> JSON:
    """The generic entity shape: attributes plus provenance."""
    return {
        "id": row["id"],
        "type": row["type"],
        "identifier": row["identifier"],
        "zone_id": row["zone_id"],
        "organization_id": row["organization_id"],
        "href": entity_href(row),
        "managed": row["managed"],
        "created_by_install_id": row["created_by_install_id"],
        "adopted_by": [use["install_id"] for use in uses if use["role"] == "adopted"],
        "used_by": sorted({use["install_id"] for use in uses}),
        "attributes": entity_read(row),
        "created_at": rfc3339(row["created_at_ms"]),
        "updated_at": rfc3339(row["updated_at_ms"]),
    }


def typed_entity_view(row: Row) -> JSON:
    return entity_read(row)
