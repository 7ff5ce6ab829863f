"""Bearer-token authentication as a FastAPI dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from zonecat import errors
from zonecat.api.context import AppContext
from zonecat.api.reads import read_direct
from zonecat.engine.access import Principal, hash_token
from zonecat.store import hot
from zonecat.store.direct import DirectReader, Row


def app_context(request: Request) -> AppContext:
    """The application context of a request (for routes that take only the request)."""
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


async def context(request: Request) -> AppContext:
    """The application context. Async although it does no I/O: FastAPI runs a sync dependency in the thread pool,
    and that hop (~0.2 ms here) cost more than everything else the dependency does."""
    return app_context(request)


def token_hash_of(authorization: str) -> str | None:
    """The hash of the bearer token in an Authorization header's value (what the tokens table keeps); None if it
    holds none."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hash_token(token.strip())


def bearer_token_hash(request: Request) -> str:
    """The hash of the request's bearer token; 401 without one."""
    token_hash = token_hash_of(request.headers.get("authorization", ""))
    if token_hash is None:
        raise errors.Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return token_hash


def valid_principal(row: Row | None) -> Principal | None:
    """The principal of a token row (``hot.token_by_hash``), unless the token is unknown (None) or revoked."""
    if row is None or row["revoked_at_ms"] is not None:
        return None
    return Principal(
        token_id=row["id"],
        organization_id=row["organization_id"],
        zones=tuple(row["zones"]) if row["zones"] is not None else None,
        read_only=bool(row["read_only"]),
        admin=bool(row["admin"]),
    )


def principal_from(request: Request, row: Row | None) -> Principal:
    """The principal of a token row read for ``request``; 401 unless the token is valid, 429 over its rate limit."""
    principal = valid_principal(row)
    if principal is None:
        raise errors.Unauthorized("unknown or revoked token")
    if getattr(request.state, "token_id", None) is None:  # once per request, even if its read is run again
        request.state.token_id = principal.token_id
        app_context(request).limiter.take(principal.token_id)
    return principal


def principal_of(request: Request, token_hash: str, reader: DirectReader) -> Principal:
    """The principal of ``token_hash``, read in ``reader``'s snapshot; 401 unless the token is valid, 429 over its
    rate limit. Routes that read through ``read_direct`` call it inside their own snapshot."""
    return principal_from(request, hot.token_by_hash(reader, token_hash))


async def authenticate(request: Request) -> Principal:
    """The principal of the request's bearer token; 401 without a valid one, 429 over its rate limit.

    The token is read on every request (a revoked token is refused at once), through ``read_direct``: on SQLite that
    is a ~20 µs read on the event loop instead of a thread-pool hop and a SQLAlchemy transaction."""
    token_hash = bearer_token_hash(request)
    return await read_direct(
        app_context(request), lambda reader: principal_of(request, token_hash, reader), snapshot=False
    )


async def writer_cheaply(request: Request, zone_id: str) -> Principal | None:
    """The principal, allowed to write in ``zone_id``, where the token read is cheap on the event loop (SQLite);
    None on PostgreSQL, where the route reads and checks it with ``writer_here`` inside the thread-pool hop it
    makes for its own work. A hop costs ~290 µs of CPU on the benchmark VM (each thread wake-up is expensive
    there), a fifth of an install request."""
    if not app_context(request).db.direct.loop_capable:
        return None
    principal = await authenticate(request)
    principal.require_write(zone_id)
    return principal


def writer_here(request: Request, zone_id: str, checked: Principal | None) -> Principal:
    """For code already in a pool thread: ``checked`` (from ``writer_cheaply``), or else the token read with the
    same one-statement read as ``authenticate``, without a hop, and its write permission checked."""
    if checked is not None:
        return checked
    token_hash = bearer_token_hash(request)
    with app_context(request).db.direct.pooled(snapshot=False) as reader:
        principal = principal_of(request, token_hash, reader)
    principal.require_write(zone_id)
    return principal


Auth = Annotated[Principal, Depends(authenticate)]
Ctx = Annotated[AppContext, Depends(context)]
