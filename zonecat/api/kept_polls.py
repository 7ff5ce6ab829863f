"""A task poll whose body is kept (``RenderedTasks``), answered with nothing but its read and two ASGI messages.

A client polling a task that has not changed since the last poll gets the very body it got before. ``get_task``
reaches that answer after building Starlette's request, its headers and query parameters, the route's match, a
``Response`` and the hot routes' exception guard: at a few thousand polls a second on one core those cost about as
much as the poll's read. ``KeptPolls`` sits ahead of the hot routes and answers such a poll itself, with the same
read (``hot.token_and_task``, on SQLite's event-loop connection) and the same headers and body.

It answers only where ``get_task`` would answer a kept body: a valid token that sees the zone and is within its rate
limit, the task in that zone, no redirect due, a body kept for that very row. Anything else (a 401, 400, 404, 429 or
303, a body still to render, a lock met, PostgreSQL) passes on untouched to ``get_task``, which answers it (from the
read made here, if there was one: ``reads.read_before``): every answer but this one has a single source.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from zonecat import errors
from zonecat.api.auth import token_hash_of, valid_principal
from zonecat.api.context import AppContext
from zonecat.api.reads import READ_BEFORE
from zonecat.api.routes.installs import redirect_wanted
from zonecat.store import hot


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The first value of header ``name`` as Starlette's ``request.headers.get`` gives it; "" if absent."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""


class KeptPolls:
    """Serves a GET of ``route`` (``get_task``'s path) from a kept body where that is ``get_task``'s answer, and
    passes every other request to ``app``. While ``instrumented()`` is true, every request goes to ``app``."""

    def __init__(self, app: ASGIApp, ctx: AppContext, route: Route, instrumented: Callable[[], bool]) -> None:
        self.app = app
        self.ctx = ctx
        self.path = route.path_regex
        self.instrumented = instrumented

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            try:
                body = self._kept_body(scope)
            except Exception:  # a lock met (WouldWait), a database error, a row it cannot make sense of, anything:
                body = None  # get_task reads again (in a thread if need be) and answers it, as every error is answered
            if body is not None:
                headers = [(b"content-length", str(len(body)).encode("ascii")), (b"content-type", b"application/json")]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _kept_body(self, scope: Scope) -> bytes | None:
        reads = self.ctx.db.direct
        match = self.path.match(scope["path"])
        if match is None or not reads.loop_capable or scope.get("root_path") or self.instrumented():
            return None
        token_hash = token_hash_of(_header(scope["headers"], b"authorization"))
        redirect = redirect_wanted(scope["query_string"])
        if token_hash is None or redirect is None:
            return None
        zone_id, task_id = match["zone_id"], match["task_id"]
        with reads.on_loop(snapshot=False) as reader:
            poll = hot.token_and_task(reader, token_hash, zone_id, task_id)
        # A poll passed on is answered from this read (``read_before``): one read a poll, whoever answers it.
        scope.setdefault("state", {})[READ_BEFORE] = (token_hash, zone_id, task_id, poll)
        principal = valid_principal(poll.token)
        if principal is None or not principal.sees_zone(zone_id) or poll.task is None or poll.key is None:
            return None
        if redirect and poll.task["status"] == "completed":
            return None
        body = self.ctx.rendered_tasks.get(poll.key)
        if body is None:
            return None
        try:
            self.ctx.limiter.take(principal.token_id)
        except errors.RateLimited:
            return None  # get_task takes again, and answers the 429
        scope.setdefault("state", {})["token_id"] = principal.token_id  # for the access log, as get_task sets it
        return body
