"""Helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from zonecat import errors
from zonecat.domain import idempotency
from zonecat.domain.paging import PageRequest
from zonecat.engine.installs import RequestInfo

Row = dict[str, Any]


def absolute_url(request: Request, path: str) -> str:
    """``path`` as an absolute URL on the request's own base: scheme, host and the prefix the app is mounted under
    (``root_path``; ``request.base_url`` would give the outermost app's root instead)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return str(request.url.replace(path=root + path, query="", fragment=""))


def page_request(request: Request) -> PageRequest:
    params = request.query_params
    expand = params.getlist("expand[]") + params.getlist("expand")
    for value in expand:
        if value != "total_count":
            raise errors.BadRequest(
                f"unknown expand value {value!r}",
                [errors.Detail("expand[]", "only total_count is supported", "bad_request")],
            )
    return PageRequest.parse(params.get("limit"), params.get("after"), params.get("before"), bool(expand))


def request_info(request: Request, parsed_body: object, request_id: str) -> RequestInfo:
    """The idempotency facts of a write: key, method, path and the canonical body's hash."""
    try:
        key = idempotency.request_key(request.headers)
    except ValueError as exc:
        raise errors.BadRequest(str(exc), [errors.Detail("Idempotency-Key", "bad length", "bad_request")]) from exc
    return RequestInfo(
        request_id=request_id,
        path=request.url.path,
        method=request.method,
        idempotency_key=key,
        body_sha=idempotency.body_sha(parsed_body),
    )
