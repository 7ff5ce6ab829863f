"""The generic entity list and the five typed entity collections."""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from zonecat import errors
from zonecat.api import docs, models, views
from zonecat.api.auth import Auth, Ctx
from zonecat.api.bodies import json_body, require_object
from zonecat.api.routes.common import page_request
from zonecat.domain.entity_types import ENTITY_TYPES, EntityType
from zonecat.engine import entities as entity_service
from zonecat.engine.access import visible_zone
from zonecat.store import entities as entity_store

router = APIRouter(tags=["entities"])


@router.get("/zones/{zone_id}/entities", responses=docs.responses(200, models.EntityList), openapi_extra=docs.paging())
def list_entities(
    zone_id: str,
    request: Request,
    principal: Auth,
    ctx: Ctx,
    type: str | None = None,
    install_id: str | None = None,
    identifier: str | None = None,
) -> JSONResponse:
    """Every entity of the zone with its provenance, newest first."""
    if type is not None and type not in ENTITY_TYPES:
        raise errors.BadRequest(
            f"unknown entity type {type!r}", [errors.Detail("type", "unknown entity type", "bad_request")]
        )
    page_req = page_request(request)
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        page = entity_store.list_entities(conn, zone_id, page_req, type, install_id, identifier)
        uses = entity_store.uses_of_entities(conn, [row["id"] for row in page.items])
    items = [views.entity_view(row, uses.get(row["id"], [])) for row in page.items]
    return JSONResponse(views.page_body(page, items))


@router.get("/zones/{zone_id}/entities/{entity_id}", responses=docs.responses(200, models.Entity))
def get_entity(zone_id: str, entity_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        row = entity_store.get_entity(conn, zone_id, entity_id)
        if row is None:
            raise errors.NotFound(f"entity {entity_id} not found")
        uses = entity_store.uses_of_entity(conn, entity_id)
    return JSONResponse(views.entity_view(row, uses))


def _register(entity_type: EntityType) -> None:
    collection = entity_type.collection
    tag: list[str | Enum] = [f"entities: {collection}"]
    base = f"/zones/{{zone_id}}/{collection}"

    @router.post(
        base,
        status_code=201,
        responses=docs.responses(201, models.TypedEntity, 403, 409),
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": entity_type.schema}}}
        },
        tags=tag,
        name=f"create_{entity_type.name}",
    )
    async def create(zone_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
        principal.require_write(zone_id)
        body = require_object(await json_body(request, ctx.settings.max_body_bytes))

        def work() -> dict[str, Any]:
            with ctx.db.read() as conn:
                visible_zone(conn, principal, zone_id)
            return views.typed_entity_view(entity_service.create_entity(ctx.db, principal, zone_id, entity_type, body))

        return JSONResponse(await run_in_threadpool(work), status_code=201)

    @router.get(
        base,
        responses=docs.responses(200, models.TypedEntityList),
        openapi_extra=docs.paging(),
        tags=tag,
        name=f"list_{entity_type.name}",
    )
    def list_(zone_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
        page_req = page_request(request)
        with ctx.db.read() as conn:
            visible_zone(conn, principal, zone_id)
            page = entity_store.list_entities(conn, zone_id, page_req, entity_type.name)
        return JSONResponse(views.typed_page_body(page, [views.typed_entity_view(row) for row in page.items]))

    @router.get(
        base + "/{entity_id}",
        responses=docs.responses(200, models.TypedEntity),
        tags=tag,
        name=f"get_{entity_type.name}",
    )
    def get(zone_id: str, entity_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
        with ctx.db.read() as conn:
            visible_zone(conn, principal, zone_id)
            row = entity_service.get_typed(conn, zone_id, entity_type, entity_id)
        return JSONResponse(views.typed_entity_view(row))

    @router.patch(
        base + "/{entity_id}",
        responses=docs.responses(200, models.TypedEntity, 403, 409),
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        },
        tags=tag,
        name=f"update_{entity_type.name}",
    )
    async def update(zone_id: str, entity_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
        principal.require_write(zone_id)
        body = require_object(await json_body(request, ctx.settings.max_body_bytes))

        def work() -> dict[str, Any]:
            with ctx.db.read() as conn:
                visible_zone(conn, principal, zone_id)
            row = entity_service.update_entity(ctx.db, principal, zone_id, entity_type, entity_id, body)
            return views.typed_entity_view(row)

        return JSONResponse(await run_in_threadpool(work))

    @router.delete(
        base + "/{entity_id}",
        status_code=204,
        responses=docs.responses(204, None, 403, 409, description="Deleted"),
        tags=tag,
        name=f"delete_{entity_type.name}",
    )
    def delete(zone_id: str, entity_id: str, principal: Auth, ctx: Ctx) -> Response:
        principal.require_write(zone_id)
        with ctx.db.read() as conn:
            visible_zone(conn, principal, zone_id)
        entity_service.delete_entity(ctx.db, principal, zone_id, entity_type, entity_id)
        return Response(status_code=204)


for _entity_type in ENTITY_TYPES.values():
    _register(_entity_type)
