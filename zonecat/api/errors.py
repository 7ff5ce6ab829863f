"""The only module that maps zonecat errors to HTTP: status codes, the error body, and retry headers."""

from __future__ import annotations

import logging
import math
import re
import uuid
from typing import Any, Final

import sqlalchemy as sa
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from zonecat import errors
from zonecat.clock import now_ms, rfc3339

log = logging.getLogger("zonecat.api")

STATUS_FOR: Final[dict[str, int]] = {
    "validation_error": 400,
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "rate_limit_exceeded": 429,
    "internal_error": 500,
    "service_unavailable": 503,
}

_CODE_FOR_STATUS: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    413: "bad_request",
    415: "bad_request",
    429: "rate_limit_exceeded",
    503: "service_unavailable",
}


def request_id_of(request: Request) -> str:
    """The request id: the caller's ``X-Client-Request-ID`` when it is a UUID, else a fresh UUID (cached)."""
    cached = getattr(request.state, "request_id", None)
    if isinstance(cached, str):
        return cached
    supplied = request.headers.get("x-client-request-id", "")
    try:
        value = str(uuid.UUID(supplied))
    except ValueError:
        value = str(uuid.uuid4())
    request.state.request_id = value
    return value


def error_body(request: Request, code: str, message: str, details: list[errors.Detail] | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "status": STATUS_FOR.get(code, 500),
        "path": request.url.path,
        "request_id": request_id_of(request),
        "timestamp": rfc3339(now_ms()),
        "details": [{"code": d.code, "field": d.field, "message": d.message} for d in details or []],
    }


def error_response(
    request: Request,
    code: str,
    message: str,
    details: list[errors.Detail] | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(request, code, message, details)
    if status is not None:
        body["status"] = status
    all_headers = dict(headers or {})
    if body["status"] == 409 or code in ("bad_request", "validation_error", "not_found", "forbidden", "unauthorized"):
        # The SDK retries 409s by default; none of ours can succeed on a plain retry.
        all_headers["x-should-retry"] = "false"
    return JSONResponse(body, status_code=body["status"], headers=all_headers)


async def on_zonecat_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ZonecatError)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_seconds)))
    if isinstance(exc, errors.Unavailable):
        headers["Retry-After"] = "1"
    if exc.code == "internal_error":
        log.error("internal error", extra={"error": exc.message})
        return error_response(request, "internal_error", "internal error; the request id identifies it in the logs")
    return error_response(request, exc.code, exc.message, exc.details, headers=headers)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = []
    for problem in exc.errors():
        location = [str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "path", "header")]
        details.append(
            errors.Detail(".".join(location) or "request", str(problem.get("msg", "invalid")), "bad_request")
        )
    return error_response(request, "bad_request", "the request is malformed", details)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_FOR_STATUS.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal_error")
    message = str(exc.detail) if exc.detail else "error"
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette's Allow names the methods of the first route whose path matched; the path may have others.
        # (Undocumented paths, such as /docs, keep Starlette's.)
        documented = allowed_methods(request.app.openapi(), request.url.path)
        if documented:
            headers["Allow"] = ", ".join(documented)
    status = exc.status_code if exc.status_code in STATUS_FOR.values() else None
    if status is None:
        status = 400 if exc.status_code < 500 else 500
    return error_response(request, code, message, status=status, headers=headers)


def allowed_methods(openapi: dict[str, Any], path: str) -> list[str]:
    """Every method the OpenAPI document gives the paths ``path`` matches (``{name}`` matching one segment)."""
    found: set[str] = set()
    for template, operations in openapi.get("paths", {}).items():
        if _TEMPLATES.setdefault(template, _template_pattern(template)).fullmatch(path):
            found.update(method.upper() for method in operations if method.upper() in _METHODS)
    return sorted(found)


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
_TEMPLATES: dict[str, re.Pattern[str]] = {}


def _template_pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))


async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable", extra={"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
    return error_response(
        request,
        "service_unavailable",
        "the database is unavailable; retry shortly",
        headers={"Retry-After": "2"},
    )


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return await on_database_error(request, exc)
    if isinstance(exc, sa.exc.StatementError):
        # Its text would carry the statement's bound parameters: write-only inputs and attributes among them.
        exc.hide_parameters = True
    log.exception("unhandled error", extra={"request_id": request_id_of(request)})
    # EdgeMiddleware wraps the whole application (``create_app``): it adds the request id header to this 500 too.
    return error_response(request, "internal_error", "internal error; the request id identifies it in the logs")
