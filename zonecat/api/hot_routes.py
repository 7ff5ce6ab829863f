"""The requests clients make most (a task poll, an install, an uninstall), served ahead of FastAPI.

Each of these endpoints takes only the request and answers a Response, so it needs nothing of FastAPI's. Reached
through FastAPI they still crossed its whole stack: the telemetry, body-limit, exception and exit-stack middlewares,
the router's route-by-route matching and the endpoint's own exception wrapper, ~100 µs of the ~430 µs a task read
cost under load on the benchmark VM. ``HotRoutes`` matches them first, with the same Starlette route (path template
and methods as documented), calls the endpoint itself, and answers its exceptions with the application's own
exception handlers, exactly as the stack would. Everything else, including a documented path with another method
(405), goes to the application unchanged; so does every request while FastAPI's native OpenTelemetry
instrumentation is on (a tracer, meter or logger provider is configured; asked once a second), so that these
requests are traced like all others. Middleware added to the FastAPI application after ``create_app`` does not see
the hot requests.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
# An exception handler as Starlette takes it (``add_exception_handler``): sync or async.
Handler = Callable[[Request, Any], Response | Awaitable[Response]]


class AskedEverySecond:
    """``predicate``'s answer, asked again at most once a second. FastAPI's check of whether OpenTelemetry is
    configured costs ~10 µs, a twentieth of a task poll, and a provider is set once, at start-up."""

    def __init__(self, predicate: Callable[[], bool], interval: float = 1.0) -> None:
        self.predicate = predicate
        self.interval = interval
        self._answer = False
        self._asked_at = -math.inf

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._asked_at >= self.interval:
            self._answer = bool(self.predicate())
            self._asked_at = now
        return self._answer


class HotRoutes:
    """Serves ``routes`` (plain Starlette routes whose endpoints take only the request) before ``fallback``.

    ``app`` is what ``request.app`` is for those requests, as it is for every other; ``handlers`` are its exception
    handlers (the mapping itself: one added later counts), looked up along the exception's MRO as Starlette does. As
    in Starlette, the handler registered for ``Exception`` answers the 500 and the exception is raised again, for
    the server to log. While ``instrumented()`` is true every request goes to ``fallback``."""

    def __init__(
        self,
        routes: Sequence[Route],
        fallback: ASGIApp,
        app: object,
        handlers: Mapping[Any, Handler],
        instrumented: Callable[[], bool] = lambda: False,
    ) -> None:
        self.routes = tuple(routes)
        self.fallback = fallback
        self.app = app
        self.handlers = handlers
        self.instrumented = instrumented

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.instrumented():
            for route in self.routes:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope["app"] = self.app
                    await self._serve(route.endpoint, scope, receive, send)
                    return
        await self.fallback(scope, receive, send)

    async def _serve(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler, server_error = self._handler_for(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            await (await answer if inspect.isawaitable(answer) else answer)(scope, receive, send)
            if server_error:
                raise
            return
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> tuple[Handler | None, bool]:
        """The handler for ``exc``, and whether it is the 500 handler (registered for ``Exception`` itself)."""
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler, cls is Exception
        return None, False
