"""The FastAPI application: routes, error handlers, middleware and the published OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from zonecat import __version__, errors
from zonecat.api import errors as api_errors
from zonecat.api.context import AppContext
from zonecat.api.hot_routes import AskedEverySecond, HotRoutes
from zonecat.api.kept_polls import KeptPolls
from zonecat.api.metrics import Metrics
from zonecat.api.middleware import EdgeMiddleware, HeadAsGet
from zonecat.api.routes import entities, installs, ops, packages, zones

DESCRIPTION = """zonecat: a self-hostable catalog of packages installed into zones by durable catalog tasks.

The catalog endpoints are wire-compatible with Keycard's API (SDK `keycardai-api` 0.14.0). Every request except
`/healthz`, `/readyz`, `/metrics` and `/openapi.json` needs `Authorization: Bearer <token>`. Every 4xx/5xx body is
the error object `Error`."""


class ZonecatAPI(FastAPI):
    """zonecat's FastAPI application. Every request enters through ``front`` (set by ``create_app``):
    EdgeMiddleware, then the hot routes, then FastAPI's own stack (``through_fastapi``)."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None:
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def through_fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(ctx: AppContext) -> ZonecatAPI:
    app = ZonecatAPI(
        title="zonecat",
        version=__version__,
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.metrics = Metrics()
    # Routes are matched in order, one after another (~5 µs each): the most requested paths first, health checks and
    # task polling (no path of one router can match a route of another, so the order changes nothing else).
    for router in (ops.router, installs.router, zones.router, packages.router, entities.router):
        app.include_router(router)
    app.add_exception_handler(errors.ZonecatError, api_errors.on_zonecat_error)
    app.add_exception_handler(RequestValidationError, api_errors.on_validation_error)
    app.add_exception_handler(StarletteHTTPException, api_errors.on_http_error)
    app.add_exception_handler(sa.exc.OperationalError, api_errors.on_database_error)
    app.add_exception_handler(sa.exc.InterfaceError, api_errors.on_database_error)
    app.add_exception_handler(Exception, api_errors.on_unexpected)
    # The routes called most (the task clients poll, install, uninstall) are served ahead of FastAPI's stack (see
    # ``hot_routes``); their APIRoutes stay in ``installs.router`` for the OpenAPI document and are never reached for
    # these methods. EdgeMiddleware wraps both, so every response, a 500 included, carries its headers.
    documented = {route.endpoint: route for route in installs.router.routes if isinstance(route, APIRoute)}
    hot = []
    for endpoint in installs.LEAN_ENDPOINTS:
        route = Route(documented[endpoint].path, endpoint)
        route.methods = set(documented[endpoint].methods or ())  # HEAD arrives as a GET (``HeadAsGet``)
        hot.append(route)
    # FastAPI's native OpenTelemetry support (0.16x on) traces only the requests its own __call__ serves.
    telemetry = getattr(app, "_native_telemetry", None)
    instrumented: Callable[[], bool] = _never
    if telemetry is not None and hasattr(telemetry, "enabled"):
        instrumented = AskedEverySecond(telemetry.enabled)
    hot_routes = HotRoutes(hot, app.through_fastapi, app, app.exception_handlers, instrumented)
    poll_route = next(route for route in hot if route.endpoint is installs.get_task)
    app.front = HeadAsGet(
        EdgeMiddleware(
            KeptPolls(hot_routes, ctx, poll_route, instrumented),
            metrics=app.state.metrics,
            max_body_bytes=ctx.settings.max_body_bytes,
        )
    )
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            _drop_default_422(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _never() -> bool:
    return False


def _drop_default_422(schema: dict[str, Any]) -> None:
    """FastAPI documents a 422 for every route; zonecat answers 400 with its own error body instead."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
