"""One pure-ASGI middleware for every response: request id, security headers, body-size guard, access log and
metrics. (Pure ASGI rather than BaseHTTPMiddleware: it costs far less per request.)"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zonecat.api.metrics import Metrics
from zonecat.clock import now_ms, rfc3339

log = logging.getLogger("zonecat.access")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for key, value in headers:
        if key == b"x-client-request-id":
            try:
                return str(uuid.UUID(value.decode("latin-1")))
            except ValueError:
                break
    return new_request_id()


def new_request_id() -> str:
    """A random (version 4) UUID in its canonical form, as ``str(uuid.uuid4())`` gives, in half its time:
    every request gets one."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = {"status": 500}
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header, *SECURITY_HEADERS]
            await send(message)

        length = _content_length(scope["headers"])
        try:
            if length is not None and length > self.max_body_bytes:
                message = f"the request body is larger than {self.max_body_bytes} bytes"
                await self._refuse(scope, request_id, send_wrapper, "body", message)
            elif "\x00" in scope["path"] or b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
                # No id, cursor or filter contains NUL, and PostgreSQL text cannot hold it: refuse it here, once.
                message = "the path or query string contains a NUL character"
                await self._refuse(scope, request_id, send_wrapper, "url", message)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            # An unhandled exception was answered (500) inside, then raised on for the server to log: counted here too.
            self._record(scope, request_id, status_holder["status"], time.perf_counter() - started)

    def _record(self, scope: Scope, request_id: str, status: int, elapsed: float) -> None:
        self.metrics.observe(scope["method"], status, elapsed)
        if not log.isEnabledFor(logging.INFO):
            return  # the record's fields are not even gathered
        state: dict[str, Any] = scope.get("state", {})
        path: str = scope["path"]
        zone = path.split("/")[2] if path.startswith("/zones/") and path.count("/") >= 2 else None
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "token_id": state.get("token_id"),
                "zone": zone,
                "method": scope["method"],
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
            },
        )

    async def _refuse(self, scope: Scope, request_id: str, send: Send, field: str, message: str) -> None:
        """A 400 in the contract's error shape, answered before the application sees the request."""
        body = json.dumps(
            {
                "code": "bad_request",
                "message": message,
                "status": 400,
                "path": scope["path"].replace("\x00", "\\0"),
                "request_id": request_id,
                "timestamp": rfc3339(now_ms()),
                "details": [{"code": "bad_request", "field": field, "message": message}],
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class HeadAsGet:
    """HEAD answered as GET without the body (RFC 9110 §9.3.2), for every GET endpoint: the health checks
    (`/healthz`, `/readyz`) of load balancers and `curl -I` included. FastAPI's routes answer only the methods they
    declare, and HEAD used to be a 400 like any other method they did not.

    The application sees a GET (in a copy of the scope: the server's own still says HEAD, so it sends no body
    either); the response keeps the headers of the GET, its Content-Length included, and loses its body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
