"""OpenAPI declarations: the error responses each route can produce, the query parameters and headers routes read
by hand, and request bodies read by hand."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from zonecat.api import models

_DESCRIPTIONS = {
    400: "Malformed request or validation error",
    401: "Missing, unknown or revoked token",
    403: "The token may not do this",
    404: "Not found (or a zone the token may not see)",
    409: "Conflict with the current state",
    429: "Rate limit exceeded",
    503: "Service unavailable",
}

COMMON = (400, 401, 404, 429, 503)

_REQUEST_ID = {
    "description": "The request's id: X-Client-Request-ID when that is a UUID, else a new UUID",
    "schema": {"type": "string"},
}
RETRY_AFTER = {"description": "Seconds to wait before retrying", "required": True, "schema": {"type": "string"}}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    409: {
        "x-should-retry": {
            "description": "A plain retry cannot succeed",
            "required": True,
            "schema": {"type": "string", "enum": ["false"]},
        }
    },
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}
LOCATION = {"description": "Absolute URL", "required": True, "schema": {"type": "string", "format": "uri"}}


def responses(
    status: int,
    model: type[BaseModel] | None,
    *errors: int,
    description: str = "Success",
    headers: dict[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    documented: dict[int | str, dict[str, Any]] = {}
    success_headers = {"X-Request-ID": _REQUEST_ID, **(headers or {})}
    if model is None:
        documented[status] = {"description": description, "headers": success_headers}
    else:
        documented[status] = {"model": model, "description": description, "headers": success_headers}
    for code in sorted(set(COMMON) | set(errors)):
        documented[code] = {
            "model": models.Error,
            "description": _DESCRIPTIONS[code],
            "headers": {"X-Request-ID": _REQUEST_ID, **_ERROR_HEADERS.get(code, {})},
        }
    return documented


def _query(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description, **extra}


def _cursor(name: str) -> dict[str, Any]:
    return _query(
        name,
        {"type": "string", "minLength": 1, "maxLength": 255},
        f"Opaque cursor: pagination.{name}_cursor of a list page (not together with "
        f"{'before' if name == 'after' else 'after'})",
    )


PAGING_PARAMETERS = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}, "Page size"),
    _cursor("after"),
    _cursor("before"),
    _query(
        "expand[]",
        {"type": "array", "items": {"type": "string", "enum": ["total_count"]}},
        "total_count: add pagination.total_count",
        style="form",
        explode=True,
    ),
]


def paging(**extra: Any) -> dict[str, Any]:
    """``openapi_extra`` of a list route: the paging query parameters (design §3.1), read by ``page_request``."""
    return {"parameters": list(PAGING_PARAMETERS), **extra}


def parameters(*documented: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` for query parameters and headers a route reads by hand."""
    return {"parameters": list(documented)}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return _query(name, schema, description)


def path(name: str, title: str) -> dict[str, Any]:
    """A path parameter of a route that reads it by hand, documented as FastAPI documents a ``str`` one."""
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": title}}


def header(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": schema, "description": description}


IDEMPOTENCY_HEADERS = (
    header(
        "Idempotency-Key",
        {"type": "string", "minLength": 1, "maxLength": 255},
        "Replays the first request's task within 24 h (design §3.4)",
    ),
    header(
        "X-Client-Request-ID",
        {"type": "string", "minLength": 1, "maxLength": 255},
        "The request id (echoed when a UUID); the idempotency key when Idempotency-Key is absent",
    ),
)


def body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its JSON body itself."""
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}
            },
        }
    }
