"""Health, readiness and metrics."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from zonecat import errors
from zonecat.api import docs, models
from zonecat.api.auth import Ctx

router = APIRouter(tags=["operations"])


@router.get("/healthz", responses={200: {"model": models.Health, "description": "The process is alive"}})
async def healthz() -> JSONResponse:
    """Liveness: answers without touching the database (and, being async, without a thread-pool hop)."""
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses=docs.responses(200, models.Health))
def readyz(ctx: Ctx) -> JSONResponse:
    """Readiness: the database answers and the process is not shutting down."""
    if ctx.shutting_down.is_set():
        raise errors.Unavailable("shutting down")
    with ctx.db.read() as conn:
        conn.execute(sa.text("SELECT 1"))
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"description": "Prometheus text format"},
        503: {
            "model": models.Error,
            "description": "The database is unavailable",
            "headers": {"Retry-After": docs.RETRY_AFTER},
        },
    },
)
def metrics(request: Request, ctx: Ctx) -> PlainTextResponse:
    """Prometheus metrics."""
    return PlainTextResponse(request.app.state.metrics.render(ctx.db), media_type="text/plain; version=0.0.4")
