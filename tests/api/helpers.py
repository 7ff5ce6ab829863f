"""Helpers shared by the in-process API tests: manifests to author, error-body checks, list walking."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zonecat.worker.worker import Worker

if TYPE_CHECKING:
    from tests.api.conftest import Api


GOOGLE_ISSUER = "https://accounts.google.com"
CALENDAR = "google-calendar-api"
DRIVE = "google-drive-api"
LINEAR = "linear-api"
CREDS = {"client_id": "cid", "client_secret": "s3cret-value"}

ERROR_KEYS = {"code", "message", "status", "path", "request_id", "timestamp", "details"}
ERROR_CODES = {
    "validation_error",
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limit_exceeded",
    "internal_error",
    "service_unavailable",
}


def assert_error(response: Any, status: int, code: str, path: str | None = None) -> dict[str, Any]:
    """The response is the contract's error object with this status and code; returns the body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert body["status"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    for detail in body["details"]:
        assert set(detail) == {"code", "field", "message"}, detail
        assert detail["code"] in ERROR_CODES
    uuid.UUID(body["request_id"])
    assert response.headers["x-request-id"] == body["request_id"]
    assert body["timestamp"].endswith("Z")
    if path is not None:
        assert body["path"] == path
    if status == 409:
        assert response.headers.get("x-should-retry") == "false"
    return dict(body)


def fields(body: dict[str, Any]) -> list[str]:
    return [detail["field"] for detail in body["details"]]


def simple_manifest(name: str, *, identifier: str | None = None, kind: str = "custom") -> dict[str, Any]:
    """A one-application package with a required string input ``app_name`` and one write-only input."""
    ident = identifier or f"https://apps.example.com/{uuid.uuid4().hex[:8]}"
    return {
        "kind": kind,
        "name": name,
        "description": f"{name} for tests",
        "tags": ["test"],
        "properties": {"urn:example:test": {"x": 1}},
        "inputs": {
            "schema": {
                "type": "object",
                "required": ["app_name"],
                "properties": {
                    "app_name": {"type": "string", "minLength": 1},
                    "token": {"type": "string", "writeOnly": True},
                },
            },
        },
        "entities": {
            "app": {
                "type": "application",
                "bindings": '{"identifier": "' + ident + '", "name": entities.inputs.app_name}',
            }
        },
        "outputs": {
            "schema": {"type": "object", "properties": {"app_id": {"type": "string"}}},
            "bindings": '{"app_id": entities.app.outputs.id}',
        },
    }


def provider_resource_manifest(name: str, issuer: str, resource_bindings: str) -> dict[str, Any]:
    """A provider then a resource that depends on it; the resource's bindings are given (to make it fail)."""
    return {
        "kind": "custom",
        "name": name,
        "entities": {
            "prov": {
                "type": "provider",
                "bindings": '{"identifier": "' + issuer + '", "name": "Prov"}',
            },
            "res": {
                "type": "resource",
                "bindings": resource_bindings,
                "links": [{"rel": "credential-provider", "href": "#prov"}],
            },
        },
    }


def create_package(api: Api, zone: str, manifest: dict[str, Any], release: bool = True) -> dict[str, Any]:
    response = api.post(f"/zones/{zone}/packages", json={"manifest": manifest})
    assert response.status_code == 201, response.text
    package = dict(response.json())
    if release:
        released = api.post(f"/zones/{zone}/packages/{package['id']}/versions", json={})
        assert released.status_code == 201, released.text
    return package


def start_install(api: Api, zone: str, package: str, inputs: dict[str, Any], **headers: str) -> Any:
    return api.post(
        f"/zones/{zone}/installs", json={"package_id": package, "inputs": inputs}, headers={**api.auth, **headers}
    )


def start_delete(api: Api, zone: str, install_id: str, **headers: str) -> Any:
    return api.delete(f"/zones/{zone}/installs/{install_id}", headers={**api.auth, **headers})


def delete_and_wait(api: Api, zone: str, install_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Delete an install; returns (the 202 body, the finished task)."""
    response = start_delete(api, zone, install_id)
    assert response.status_code == 202, response.text
    accepted = dict(response.json())
    return accepted, api.wait_task(zone, accepted["id"])


def walk(
    api: Api,
    path: str,
    limit: int,
    headers: dict[str, str] | None = None,
    between_pages: Callable[[], None] | None = None,
) -> tuple[list[str], list[str]]:
    """Walk a list forward with ``after`` to its end, then backward with ``before`` to its start.

    Returns (ids seen forward, ids seen backward), both newest first: the backward walk starts with the last
    forward page and prepends each page it fetches. ``between_pages`` (if given) runs after every page.
    """
    sep = "&" if "?" in path else "?"

    def page(cursor_name: str | None, cursor: str | None) -> dict[str, Any]:
        url = f"{path}{sep}limit={limit}" + (f"&{cursor_name}={cursor}" if cursor else "")
        response = api.get(url, headers=headers or api.auth)
        assert response.status_code == 200, response.text
        body = dict(response.json())
        assert set(body["pagination"]) >= {"after_cursor", "before_cursor"}
        assert len(body["items"]) <= limit
        if between_pages is not None:
            between_pages()
        return body

    forward: list[str] = []
    body = page(None, None)
    assert body["pagination"]["before_cursor"] is None
    while True:
        last_page = [item["id"] for item in body["items"]]
        forward += last_page
        if body["pagination"]["after_cursor"] is None:
            break
        body = page("after", body["pagination"]["after_cursor"])
    backward = list(last_page)
    cursor = body["pagination"]["before_cursor"]
    while cursor is not None:
        body = page("before", cursor)
        backward = [item["id"] for item in body["items"]] + backward
        cursor = body["pagination"]["before_cursor"]
    return forward, backward


def pause_worker(api: Api) -> None:
    """Stop the fixture's worker thread and wait until it has exited, so new tasks stay pending.

    Tests then run the due tasks with ``run_due_tasks``.
    """
    api.worker.stop()
    for thread in threading.enumerate():
        if getattr(thread, "_target", None) == api.worker.run:
            thread.join(timeout=10)
            assert not thread.is_alive()


def run_due_tasks(api: Api) -> int:
    """Run every due task to its end in this thread (with a fresh worker; the paused one would stop at once)."""
    worker = Worker(api.db, api.worker.settings, name="test-driver")
    while worker.run_one():  # one call runs a task and those claimed by the end of the one before
        pass
    return worker.tasks_run


def make_token(api: Api, name: str, zones: list[str] | None = None, read_only: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "read_only": read_only}
    if zones is not None:
        body["zones"] = zones
    response = api.post("/tokens", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
