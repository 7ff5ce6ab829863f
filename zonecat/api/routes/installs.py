"""Installs and catalog tasks: the Keycard-compatible endpoints plus task lists, events and install graphs."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from zonecat import errors
from zonecat.api import docs, models, views
from zonecat.api.auth import (
    Auth,
    Ctx,
    app_context,
    bearer_token_hash,
    principal_from,
    writer_cheaply,
    writer_here,
)
from zonecat.api.bodies import body_bytes, parse_json_body, require_object
from zonecat.api.context import AppContext
from zonecat.api.errors import request_id_of
from zonecat.api.reads import read_before, read_direct
from zonecat.api.routes.common import absolute_url, page_request, request_info
from zonecat.domain.manifest import Manifest
from zonecat.domain.paging import decimal_digits
from zonecat.domain.states import InstallStatus
from zonecat.engine import installs as install_service
from zonecat.engine.access import visible_zone
from zonecat.engine.views import entity_href
from zonecat.store import entities as entity_store
from zonecat.store import hot
from zonecat.store import installs as install_store
from zonecat.store import packages as package_store
from zonecat.store import tasks as task_store
from zonecat.store.direct import DirectReader, WouldWait

router = APIRouter(tags=["installs"])

# ``?redirect=`` of a task read: the accepted spellings and what each means.
_SEQ = {"type": "string", "pattern": "^[0-9]{1,9}$"}
# A task with more events than this is rendered in a thread, not on the event loop (about 2 events per entity).
_LOOP_EVENTS = 200
_REDIRECT_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@functools.lru_cache(maxsize=256)
def redirect_wanted(query_string: bytes) -> bool | None:
    """A task read's ``?redirect=``, read as Starlette reads query parameters (the last one counts; absent: true); None
    if it is not one of the accepted spellings. Kept per query string: a poller sends the same one each time, and
    parsing it cost ~10 µs a poll."""
    flag = "true"
    if query_string:
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if name == "redirect":
                flag = value
    return _REDIRECT_FLAGS.get(flag.lower())


def _current_view(ctx: AppContext, task: dict[str, Any], created: bool = False) -> dict[str, Any]:
    """The task as it is now (the worker may already have moved it), rendered for a 202. A task this request
    just created is answered as committed: pending, no links yet (one read transaction fewer per install)."""
    if created:
        return views.task_view(None, task, [])
    with ctx.db.read() as conn:
        return views.task_view(conn, task_store.task_by_id(conn, task["id"]) or task)


def _accepted(request: Request, zone_id: str, task: dict[str, Any], body: dict[str, Any]) -> JSONResponse:
    location = absolute_url(request, f"/zones/{zone_id}/catalog_tasks/{task['id']}")
    return JSONResponse(body, status_code=202, headers={"Location": location})


# The route clients poll. It is served ahead of FastAPI's stack (``zonecat.api.hot_routes``); this APIRoute
# documents it.
@router.get(
    "/zones/{zone_id}/catalog_tasks/{task_id}",
    responses={
        **docs.responses(200, models.Task),
        303: {
            "description": "The task completed: see its install (absolute Location)",
            "headers": {"Location": docs.LOCATION},
        },
    },
    openapi_extra=docs.parameters(
        # The handler reads its path parameters itself (see below), so they are documented here.
        docs.path("zone_id", "Zone Id"),
        docs.path("task_id", "Task Id"),
        docs.query(
            "redirect",
            {"type": "string", "enum": list(_REDIRECT_FLAGS), "default": "true"},
            "false (or 0, no): always 200 with the task, never 303; case-insensitive",
        ),
    ),
)
async def get_task(request: Request) -> Response:
    """A task while pending, running or failed; once completed, 303 to its install (``?redirect=false``: 200)."""
    # It takes only the request, and is served ahead of FastAPI (``zonecat.api.hot_routes``): FastAPI's middleware,
    # routing and dependency solving cost more than the rest of the request. It reads through the driver
    # (``read_direct``: on SQLite, on the event loop) with no snapshot: the token and the task with its zone's check
    # in one statement, then (unless its body is already rendered) the step events the row counts, which are the
    # same whenever they are read while the task exists (``hot.step_outcomes``). A poll whose body is kept is
    # answered even before the hot routes, by ``zonecat.api.kept_polls``, where this would answer it.
    zone_id, task_id = request.path_params["zone_id"], request.path_params["task_id"]
    token_hash = bearer_token_hash(request)
    redirect = redirect_wanted(request.scope["query_string"])
    ctx = app_context(request)

    def work(reader: DirectReader) -> Response:
        poll = read_before(request.scope, token_hash, zone_id, task_id)
        if poll is None:
            poll = hot.token_and_task(reader, token_hash, zone_id, task_id)
        principal = principal_from(request, poll.token)
        if redirect is None:
            raise errors.BadRequest(
                f"redirect must be one of {', '.join(_REDIRECT_FLAGS)}",
                [errors.Detail("redirect", "not a boolean", "bad_request")],
            )
        principal.require_zone(zone_id)
        row, key = poll.task, poll.key
        if row is None or key is None:
            raise _task_missing(reader, principal.organization_id, zone_id, task_id)
        if redirect and row["status"] == "completed":
            location = absolute_url(request, f"/zones/{zone_id}/installs/{row['install_id']}")
            return RedirectResponse(location, status_code=303)
        body = ctx.rendered_tasks.get(key)
        if body is not None:
            return Response(body, media_type="application/json")
        if reader.on_loop and row["event_seq"] > _LOOP_EVENTS:
            # Its links are too many to read and render on the event loop (a 10,000-entity task's are ~2 MB).
            raise WouldWait(f"task {task_id} has {row['event_seq']} events")
        outcomes = hot.step_outcomes(reader, task_id, row["event_seq"])
        # A task's events are deleted only with it (its zone's deletion, one transaction): the row still there after
        # they were read proves none was missing.
        if not hot.task_exists(reader, task_id):
            raise _task_missing(reader, principal.organization_id, zone_id, task_id)
        response = JSONResponse(views.task_view(None, row, outcomes))
        ctx.rendered_tasks.put(key, bytes(response.body))
        return response

    return await read_direct(ctx, work, snapshot=False)


def _task_missing(reader: DirectReader, organization_id: str, zone_id: str, task_id: str) -> errors.NotFound:
    """The 404 of a task read that found no task: its zone's, if the zone is gone too."""
    if hot.get_zone(reader, organization_id, zone_id) is None:
        return errors.NotFound(f"zone {zone_id} not found")
    return errors.NotFound(f"task {task_id} not found")


@router.post(
    "/zones/{zone_id}/installs",
    status_code=202,
    responses=docs.responses(
        202, models.Task, 403, 409, description="Accepted: the create task", headers={"Location": docs.LOCATION}
    ),
    openapi_extra={
        **docs.body(models.InstallCreate),
        **docs.parameters(docs.path("zone_id", "Zone Id"), *docs.IDEMPOTENCY_HEADERS),
    },
)
async def create_install(request: Request) -> JSONResponse:
    """Install a package version into the zone. Returns the pending create task."""
    # Request-only and served ahead of FastAPI, like get_task (``zonecat.api.hot_routes``). On PostgreSQL the
    # token is read in the pool thread with the rest (one hop), so the body is read here first and every body
    # error, its size included, is raised there after the token and the permission: 401, 403 and 429 come first.
    zone_id = request.path_params["zone_id"]
    ctx = app_context(request)
    bearer_token_hash(request)  # 401 without a bearer token at all, before any of the body is read
    checked = await writer_cheaply(request, zone_id)
    body_error: errors.BadRequest | None = None
    try:
        raw = await body_bytes(request, ctx.settings.max_body_bytes)
    except errors.BadRequest as too_large:
        raw, body_error = b"", too_large
    request_id = request_id_of(request)

    def work() -> dict[str, Any]:
        principal = writer_here(request, zone_id, checked)
        if body_error is not None:
            raise body_error
        body = require_object(parse_json_body(raw))
        info = request_info(request, body, request_id)
        # The zone is checked by request_install, in the transaction that decides the request.
        task, created = install_service.request_install(
            ctx.db, principal, zone_id, body, info, ctx.settings.max_inputs_bytes
        )
        if created:
            ctx.wake_worker()
        return _current_view(ctx, task, created)

    view = await run_in_threadpool(work)
    return _accepted(request, zone_id, view, view)


@router.get(
    "/zones/{zone_id}/installs",
    responses=docs.responses(200, models.InstallList),
    openapi_extra=docs.paging(),
)
def list_installs(zone_id: str, request: Request, principal: Auth, ctx: Ctx, status: str | None = None) -> JSONResponse:
    """List the zone's installs, newest first (deleted ones included)."""
    if status is not None and status not in tuple(InstallStatus):
        raise errors.BadRequest(
            f"unknown status {status!r}", [errors.Detail("status", "unknown install status", "bad_request")]
        )
    page_req = page_request(request)
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        page = install_store.list_installs(conn, zone_id, page_req, status)
        return JSONResponse(views.page_body(page, [views.install_view(conn, row) for row in page.items]))


@router.get("/zones/{zone_id}/installs/{install_id}", responses=docs.responses(200, models.Install))
def get_install(zone_id: str, install_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    """One install, with its outputs and a link to every entity it uses."""
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        row = install_store.get_install(conn, zone_id, install_id)
        if row is None:
            raise errors.NotFound(f"install {install_id} not found")
        return JSONResponse(views.install_view(conn, row))


@router.delete(
    "/zones/{zone_id}/installs/{install_id}",
    status_code=202,
    responses=docs.responses(
        202,
        models.Task,
        403,
        409,
        description="Accepted: the delete task with its warnings",
        headers={"Location": docs.LOCATION},
    ),
    openapi_extra=docs.parameters(
        docs.path("zone_id", "Zone Id"), docs.path("install_id", "Install Id"), *docs.IDEMPOTENCY_HEADERS
    ),
)
async def delete_install(request: Request) -> JSONResponse:
    """Uninstall: returns the delete task, whose warnings name every entity that will be preserved."""
    # Request-only and served ahead of FastAPI, like get_task (``zonecat.api.hot_routes``).
    zone_id, install_id = request.path_params["zone_id"], request.path_params["install_id"]
    ctx = app_context(request)
    checked = await writer_cheaply(request, zone_id)
    request_id = request_id_of(request)

    def work() -> dict[str, Any]:
        principal = writer_here(request, zone_id, checked)
        # The SDK sends Content-Type: application/json with no body; any body is ignored.
        info = request_info(request, None, request_id)
        # The zone is checked by request_delete, in the transaction that decides the request.
        task = install_service.request_delete(ctx.db, principal, zone_id, install_id, info)
        ctx.wake_worker()
        return _current_view(ctx, task)

    view = await run_in_threadpool(work)
    return _accepted(request, zone_id, view, view)


@router.get(
    "/zones/{zone_id}/catalog_tasks", responses=docs.responses(200, models.TaskList), openapi_extra=docs.paging()
)
def list_tasks(
    zone_id: str,
    request: Request,
    principal: Auth,
    ctx: Ctx,
    install_id: str | None = None,
    status: str | None = None,
    operation: str | None = None,
) -> JSONResponse:
    """The zone's tasks, newest first, filtered by install, status or operation."""
    if status is not None and status not in ("pending", "running", "completed", "failed"):
        raise errors.BadRequest(
            f"unknown status {status!r}", [errors.Detail("status", "unknown status", "bad_request")]
        )
    if operation is not None and operation not in ("create", "delete"):
        raise errors.BadRequest(
            f"unknown operation {operation!r}", [errors.Detail("operation", "create or delete", "bad_request")]
        )
    page_req = page_request(request)
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        page = task_store.list_tasks(conn, zone_id, page_req, install_id, status, operation)
        return JSONResponse(views.page_body(page, views.task_views(conn, page.items)))


@router.get(
    "/zones/{zone_id}/catalog_tasks/{task_id}/events",
    responses=docs.responses(200, models.TaskEventList),
    openapi_extra=docs.parameters(
        docs.query("after_seq", _SEQ, "Only events after this seq"),
        docs.query("after", _SEQ, "Same as after_seq (pagination.after_cursor of the previous page)"),
        docs.query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}, "Page size"),
    ),
)
def list_task_events(zone_id: str, task_id: str, request: Request, principal: Auth, ctx: Ctx) -> JSONResponse:
    """The task's events in order: status changes, and the start and outcome of each entity step."""
    params = request.query_params
    # Both spellings are checked: one that is given must be valid even when the other is given too.
    starts: dict[str, int] = {}
    for name in ("after_seq", "after"):
        if name in params:
            value = decimal_digits(params[name])
            if value is None:
                raise errors.BadRequest(
                    f"{name} must be a non-negative integer", [errors.Detail(name, "not an integer", "bad_request")]
                )
            starts[name] = value
    if len(set(starts.values())) > 1:
        raise errors.BadRequest(
            "after and after_seq disagree; give one of them",
            [errors.Detail("after", "differs from after_seq", "bad_request")],
        )
    start = next(iter(starts.values()), 0)
    limit = decimal_digits(params.get("limit", "1000"), max_digits=4)
    if limit is None or not 1 <= limit <= 1000:
        raise errors.BadRequest(
            "limit must be between 1 and 1000", [errors.Detail("limit", "out of range", "bad_request")]
        )
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        if task_store.get_task(conn, zone_id, task_id) is None:
            raise errors.NotFound(f"task {task_id} not found")
        rows = task_store.list_events(conn, task_id, start, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    pagination = {
        "after_cursor": str(rows[-1]["seq"]) if rows and more else None,
        "before_cursor": None,
    }
    return JSONResponse({"items": [views.event_view(row) for row in rows], "pagination": pagination})


@router.get("/zones/{zone_id}/installs/{install_id}/graph", responses=docs.responses(200, models.InstallGraph))
def install_graph(zone_id: str, install_id: str, principal: Auth, ctx: Ctx) -> JSONResponse:
    """The install's entity graph: one node per local name (with the entity it resolved to), edges to what each
    depends on."""
    with ctx.db.read() as conn:
        visible_zone(conn, principal, zone_id)
        install = install_store.get_install(conn, zone_id, install_id)
        if install is None:
            raise errors.NotFound(f"install {install_id} not found")
        version = package_store.find_version(conn, install["package_id"], install["version_id"])
        uses = {use["local_name"]: use for use in entity_store.uses_of_install(conn, install_id)}
        found = entity_store.entities_by_ids(conn, [use["entity_id"] for use in uses.values()])
    if version is None:
        raise errors.NotFound(f"the package version of install {install_id} no longer exists")
    manifest = Manifest.from_raw(version["manifest"])
    nodes = []
    for name in manifest.order():
        use = uses.get(name)
        entity = found.get(use["entity_id"]) if use else None
        nodes.append(
            {
                "local_name": name,
                "type": manifest.entities[name].type,
                "identifier": entity["identifier"] if entity else None,
                "entity_id": entity["id"] if entity else None,
                "href": entity_href(entity) if entity else None,
                "action": use["role"] if use else None,
            }
        )
    edges = []
    for name, depends_on in sorted(manifest.dependencies().items()):
        link_rels = {
            str(link.get("href", ""))[1:]: str(link.get("rel", "depends-on"))
            for link in manifest.entities[name].links
            if isinstance(link, dict)
        }
        for target in sorted(depends_on):
            edges.append({"from": name, "to": target, "rel": link_rels.get(target, "depends-on")})
    return JSONResponse({"install_id": install_id, "status": install["status"], "nodes": nodes, "edges": edges})


# Served ahead of FastAPI's stack (``zonecat.api.hot_routes``, wired in ``create_app``), matched in this order.
LEAN_ENDPOINTS = (get_task, create_install, delete_install)
