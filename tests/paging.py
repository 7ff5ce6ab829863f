"""Every item of a paged list endpoint, for tests and campaigns that talk HTTP (httpx or Starlette's TestClient)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Response = Any  # httpx.Response or the TestClient's: both have status_code, text and json()


def all_items(
    http: Any,
    path: str,
    params: dict[str, str] | None = None,
    check: Callable[[Response], None] | None = None,
) -> list[dict[str, Any]]:
    """Follow ``pagination.after_cursor`` from the first page to the last. Each response goes to ``check`` if one
    is given, else it must be a 200."""
    items: list[dict[str, Any]] = []
    query = dict(params or {})
    while True:
        response = http.get(path, params=query)
        if check is not None:
            check(response)
        else:
            assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["pagination"]["after_cursor"]
        if not cursor:
            return items
        query["after"] = cursor
