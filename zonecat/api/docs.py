"""OpenAPI declarations: the error responses each route can produce, and request bodies read by hand."""

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


def responses(
    status: int, model: type[BaseModel] | None, *errors: int, description: str = "Success"
) -> dict[int | str, dict[str, Any]]:
    documented: dict[int | str, dict[str, Any]] = {}
    if model is None:
        documented[status] = {"description": description}
    else:
        documented[status] = {"model": model, "description": description}
    for code in sorted(set(COMMON) | set(errors)):
        documented[code] = {"model": models.Error, "description": _DESCRIPTIONS[code]}
    return documented


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
