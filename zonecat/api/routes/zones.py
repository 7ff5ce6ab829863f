"""Zones and tokens (zonecat's own endpoints)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from zonecat import errors
from zonecat.api import docs, models, views
from zonecat.api.auth import Auth, Ctx
from zonecat.api.bodies import json_body, require_object
from zonecat.api.routes.common import page_request
from zonecat.clock import now_ms
from zonecat.engine.access import generate_token, hash_token, locked_zone, visible_zone
from zonecat.ids import new_id
from zonecat.store import zones as zone_store

router = APIRouter(tags=["zones"])


def _text(body: dict[str, Any], key: str, required: bool, max_length: int) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise errors.ValidationFailed(f"{key} is required", [errors.Detail(key, "is required")])
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise errors.ValidationFailed(
            f"{key} must be a string of 1 to {max_length} characters",
            [errors.Detail(key, f"must be a string of 1 to {max_length} characters")],
        )
    return value


@router.post(
    "/zones",
    status_code=201,
    responses=docs.responses(201, models.Zone, 403, 409),
    openapi_extra=docs.body(models.ZoneCreate),
)
async def create_zone(request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Create a zone (organization-wide read-write tokens only). Zone names are unique."""
    principal.require_write()
    principal.require_organization_wide()
    body = require_object(await json_body(request, ctx.settings.max_body_bytes))
    name = _text(body, "name", True, 255)
    description = _text(body, "description", False, 2048)

    def work() -> dict[str, Any]:
        now = now_ms()
        row = {
            "id": new_id("zon", now),
            "organization_id": principal.organization_id,
            "name": name,
            "description": description,
            "created_at_ms": now,
            "updated_at_ms": now,
        }
        with ctx.db.write() as conn:
            if zone_store.zone_by_name(conn, principal.organization_id, str(name)) is not None:
                raise errors.Conflict(
                    f"a zone named '{name}' already exists", [errors.Detail("name", "taken", "conflict")]
                )
            try:
                with conn.begin_nested():
                    zone_store.insert_zone(conn, row)
            except sa.exc.IntegrityError as exc:
                raise errors.Conflict(f"a zone named '{name}' already exists") from exc
        return views.zone_view(row)

    return JSONResponse(await run_in_threadpool(work), status_code=201)


@router.get("/zones", responses=docs.responses(200, models.ZoneList), openapi_extra=docs.paging())
def list_zones(request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """The zones this token may see, newest first."""
    page_req = page_request(request)
    visible = list(principal.zones) if principal.zones is not None else None
    with ctx.db.read() as conn:
        page = zone_store.list_zones(conn, principal.organization_id, visible, page_req)
    return JSONResponse(views.page_body(page, [views.zone_view(row) for row in page.items]))


@router.get("/zones/{zone_id}", responses=docs.responses(200, models.Zone))
def get_zone(zone_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    with ctx.db.read() as conn:
        return JSONResponse(views.zone_view(visible_zone(conn, principal, zone_id)))


@router.patch(
    "/zones/{zone_id}",
    responses=docs.responses(200, models.Zone, 403, 409),
    openapi_extra=docs.body(models.ZoneUpdate),
)
async def update_zone(zone_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Rename a zone or change its description."""
    principal.require_write(zone_id)
    body = require_object(await json_body(request, ctx.settings.max_body_bytes))
    name = _text(body, "name", False, 255)
    description = _text(body, "description", False, 2048) if "description" in body else None

    def work() -> dict[str, Any]:
        with ctx.db.write() as conn:
            row = visible_zone(conn, principal, zone_id)
            changes: dict[str, Any] = {"updated_at_ms": now_ms()}
            if name is not None and name != row["name"]:
                if zone_store.zone_by_name(conn, principal.organization_id, name) is not None:
                    raise errors.Conflict(f"a zone named '{name}' already exists")
                changes["name"] = name
            if "description" in body:
                changes["description"] = description
            zone_store.update_zone(conn, zone_id, changes)
            row.update(changes)
        return views.zone_view(row)

    return JSONResponse(await run_in_threadpool(work))


@router.delete(
    "/zones/{zone_id}", status_code=204, responses=docs.responses(204, None, 403, 409, description="Deleted")
)
def delete_zone(zone_id: str, principal: Auth, ctx: Ctx) -> Response:
    """Delete a zone that has no install left that is not deleted."""
    principal.require_write(zone_id)
    with ctx.db.write() as conn:
        # First wait for the writes that hold the zone (an install request, a package, an entity …): the installs
        # counted next are then all of them, and no new one comes until the zone is gone.
        locked_zone(conn, principal, zone_id)
        live = zone_store.live_install_count(conn, zone_id)
        if live:
            raise errors.Conflict(f"zone {zone_id} still has {live} install(s) that are not deleted")
        zone_store.delete_zone(conn, zone_id)
    return Response(status_code=204)


@router.post(
    "/tokens",
    status_code=201,
    responses=docs.responses(201, models.Token, 403),
    openapi_extra=docs.body(models.TokenCreate),
    tags=["tokens"],
)
async def create_token(request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Create a token (organization admins only). The secret is in ``token`` of this response only."""
    principal.require_admin()
    principal.require_write()
    body = require_object(await json_body(request, ctx.settings.max_body_bytes))
    name = _text(body, "name", True, 255)
    zones = body.get("zones")
    if zones is not None and (not isinstance(zones, list) or not all(isinstance(z, str) for z in zones) or not zones):
        raise errors.ValidationFailed(
            "zones must be a non-empty list of zone ids", [errors.Detail("zones", "bad list")]
        )
    read_only = body.get("read_only", False)
    if not isinstance(read_only, bool):
        raise errors.ValidationFailed("read_only must be a boolean", [errors.Detail("read_only", "must be a boolean")])

    def work() -> dict[str, Any]:
        secret = generate_token()
        now = now_ms()
        row = {
            "id": new_id("tok", now),
            "organization_id": principal.organization_id,
            "name": name,
            "token_hash": hash_token(secret),
            "zones": zones,
            "read_only": read_only,
            "admin": False,
            "created_at_ms": now,
            "revoked_at_ms": None,
        }
        with ctx.db.write() as conn:
            for zone_id in zones or []:
                if zone_store.get_zone(conn, principal.organization_id, zone_id) is None:
                    raise errors.ValidationFailed(f"zone {zone_id} does not exist", [errors.Detail("zones", zone_id)])
            zone_store.insert_token(conn, row)
        return {**views.token_view(row), "token": secret}

    return JSONResponse(await run_in_threadpool(work), status_code=201)


@router.get(
    "/tokens", responses=docs.responses(200, models.TokenList, 403), openapi_extra=docs.paging(), tags=["tokens"]
)
def list_tokens(request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """Live tokens of the organization (never their secrets)."""
    principal.require_admin()
    page_req = page_request(request)
    with ctx.db.read() as conn:
        page = zone_store.list_tokens(conn, principal.organization_id, page_req)
    return JSONResponse(views.page_body(page, [views.token_view(row) for row in page.items]))


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    responses=docs.responses(204, None, 403, description="Revoked"),
    tags=["tokens"],
)
def revoke_token(token_id: str, principal: Auth, ctx: Ctx) -> Response:
    """Revoke a token; it is refused from the next request on."""
    principal.require_admin()
    principal.require_write()
    with ctx.db.write() as conn:
        row = zone_store.get_token(conn, principal.organization_id, token_id)
        if row is None or row["revoked_at_ms"] is not None:
            raise errors.NotFound(f"token {token_id} not found")
        zone_store.revoke_token(conn, token_id, now_ms())
    return Response(status_code=204)
