"""Bearer-token authentication as a FastAPI dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from zonecat import errors
from zonecat.api.context import AppContext
from zonecat.engine.access import Principal, hash_token
from zonecat.store import zones as zone_store


def _context(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


async def context(request: Request) -> AppContext:
    """The application context. Async although it does no I/O: FastAPI runs a sync dependency in the thread pool,
    and that hop (~0.2 ms here) cost more than everything else the dependency does."""
    return _context(request)


def authenticate(request: Request) -> Principal:
    """The principal of the request's bearer token; 401 without a valid one, 429 over its rate limit."""
    ctx = _context(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    with ctx.db.read() as conn:
        row = zone_store.token_by_hash(conn, hash_token(token.strip()))
    if row is None or row["revoked_at_ms"] is not None:
        raise errors.Unauthorized("unknown or revoked token")
    principal = Principal(
        token_id=row["id"],
        organization_id=row["organization_id"],
        zones=tuple(row["zones"]) if row["zones"] is not None else None,
        read_only=bool(row["read_only"]),
        admin=bool(row["admin"]),
    )
    request.state.token_id = principal.token_id
    ctx.limiter.take(principal.token_id)
    return principal


Auth = Annotated[Principal, Depends(authenticate)]
Ctx = Annotated[AppContext, Depends(context)]
