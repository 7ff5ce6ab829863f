"""Errors (design §3.3), request ids, rate limiting, operations endpoints and the OpenAPI document."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.api.helpers import CALENDAR, CREDS, assert_error, bearer, fields
from zonecat.api.app import create_app
from zonecat.api.context import AppContext, RateLimiter
from zonecat.engine.bootstrap import ensure_admin_token
from zonecat.settings import Settings
from zonecat.store import zones as zone_store
from zonecat.store.database import Database


def test_malformed_json_is_bad_request(api: Api) -> None:
    zone = api.new_zone()
    for path, method in [
        ("/zones", "POST"),
        (f"/zones/{zone}", "PATCH"),
        (f"/zones/{zone}/installs", "POST"),
        (f"/zones/{zone}/packages", "POST"),
        (f"/zones/{zone}/providers", "POST"),
        ("/tokens", "POST"),
    ]:
        response = api.client.request(
            method, path, headers={**api.auth, "Content-Type": "application/json"}, content=b'{"name": '
        )
        body = assert_error(response, 400, "bad_request", path)
        assert fields(body) == ["body"]


def test_non_utf8_and_empty_bodies(api: Api) -> None:
    zone = api.new_zone()
    path = f"/zones/{zone}/installs"
    headers = {**api.auth, "Content-Type": "application/json"}
    assert_error(api.client.post(path, headers=headers, content=b'{"package_id": "\xff\xfe"}'), 400, "bad_request")
    assert_error(api.client.post(path, headers=headers, content=b""), 400, "bad_request")
    assert_error(api.client.post(path, headers=headers, content=b"[1, 2]"), 400, "bad_request")
    assert_error(api.client.post(path, headers=headers, content=b"[" * 200 + b"]" * 200), 400, "bad_request")
    assert api.get(path).json()["items"] == []


def test_body_over_one_mebibyte_is_bad_request(api: Api) -> None:
    zone = api.new_zone()
    path = f"/zones/{zone}/installs"
    big = b'{"package_id": "x", "inputs": {"pad": "' + b"a" * (1024 * 1024) + b'"}}'
    response = api.client.post(path, headers={**api.auth, "Content-Type": "application/json"}, content=big)
    assert_error(response, 400, "bad_request", path)

    # Streamed without a Content-Length, the body is still cut off at the limit.
    def chunks() -> Iterator[bytes]:
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    response = api.client.post(path, headers={**api.auth, "Content-Type": "application/json"}, content=chunks())
    assert_error(response, 400, "bad_request", path)
    # The same request just under the limit is read (and fails for its content, not its size).
    small = b'{"package_id": "nope", "inputs": {"pad": "' + b"a" * 1000 + b'"}}'
    response = api.client.post(path, headers={**api.auth, "Content-Type": "application/json"}, content=small)
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "after=xyz&before=xyz",
        "after=not-a-cursor",
        "before=%25%25%25",
        "after=" + "a" * 256,
    ],
)
def test_bad_list_parameters(api: Api, query: str) -> None:
    zone = api.new_zone()
    for path in ("/zones", f"/zones/{zone}/installs", f"/zones/{zone}/packages", f"/zones/{zone}/catalog_tasks"):
        assert_error(api.get(f"{path}?{query}"), 400, "bad_request", path)
    assert_error(api.get(f"/zones/{zone}/providers?{query}"), 400, "bad_request")
    assert_error(api.get(f"/zones/{zone}/packages/{CALENDAR}/versions?{query}"), 400, "bad_request")


def test_both_cursors_with_valid_values_is_bad_request(api: Api) -> None:
    for index in range(3):
        api.new_zone(f"z{index}")
    page = api.get("/zones?limit=1&after=" + api.get("/zones?limit=1").json()["pagination"]["after_cursor"]).json()
    after, before = page["pagination"]["after_cursor"], page["pagination"]["before_cursor"]
    assert after and before
    body = assert_error(api.get(f"/zones?after={after}&before={before}"), 400, "bad_request")
    assert body["details"]


def test_limit_bounds_are_accepted(api: Api) -> None:
    assert api.get("/zones?limit=1").status_code == 200
    assert api.get("/zones?limit=100").status_code == 200


def test_unknown_route_and_method(api: Api) -> None:
    assert_error(api.get("/nowhere"), 404, "not_found", "/nowhere")
    response = api.client.put("/zones", headers=api.auth, json={})
    assert response.status_code in (400, 405)
    body = response.json()
    assert set(body) == {"code", "message", "status", "path", "request_id", "timestamp", "details"}
    assert body["status"] == response.status_code


def test_request_id_header_on_every_response(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    responses = [
        api.client.get("/healthz"),
        api.client.get("/readyz"),
        api.client.get("/metrics"),
        api.client.get("/openapi.json"),
        api.get("/zones"),
        api.get(f"/zones/{zone}/catalog_tasks/{task['id']}", follow_redirects=False),
        api.client.get("/zones"),
        api.delete(f"/zones/{zone}/providers/ent_x"),
        api.post("/zones", json={"name": "n2"}),
    ]
    seen = set()
    for response in responses:
        request_id = response.headers["x-request-id"]
        uuid.UUID(request_id)
        seen.add(request_id)
    assert len(seen) == len(responses)
    assert responses[5].status_code == 303


def test_request_id_echoes_a_uuid_client_request_id(api: Api) -> None:
    client_id = str(uuid.uuid4())
    response = api.get("/zones/zon_missing", headers={**api.auth, "X-Client-Request-ID": client_id})
    body = assert_error(response, 404, "not_found")
    assert body["request_id"] == client_id
    assert response.headers["x-request-id"] == client_id
    ok = api.get("/zones", headers={**api.auth, "X-Client-Request-ID": client_id})
    assert ok.headers["x-request-id"] == client_id
    # Not a UUID: a fresh one is made.
    response = api.get("/zones/zon_missing", headers={**api.auth, "X-Client-Request-ID": "not-a-uuid"})
    body = assert_error(response, 404, "not_found")
    assert body["request_id"] != "not-a-uuid"
    assert response.headers["x-request-id"] == body["request_id"]


def test_409_carries_x_should_retry_false(api: Api) -> None:
    api.new_zone("same")
    response = api.post("/zones", json={"name": "same"})
    assert_error(response, 409, "conflict")
    assert response.headers["x-should-retry"] == "false"


def test_error_bodies_never_leak_internals(api: Api) -> None:
    zone = api.new_zone()
    response = api.client.post(
        f"/zones/{zone}/installs", headers={**api.auth, "Content-Type": "application/json"}, content=b"{bad"
    )
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


@pytest.fixture
def limited_client(settings: Settings, sqlite_db: Database) -> Iterator[TestClient]:
    ensure_admin_token(sqlite_db, ADMIN_TOKEN)
    ctx = AppContext(db=sqlite_db, settings=settings, limiter=RateLimiter(1, 2))
    with TestClient(create_app(ctx), base_url="http://testserver") as client:
        yield client


def test_rate_limit_is_429_with_retry_after(limited_client: TestClient) -> None:
    headers = bearer(ADMIN_TOKEN)
    assert limited_client.get("/zones", headers=headers).status_code == 200
    assert limited_client.get("/zones", headers=headers).status_code == 200
    response = limited_client.get("/zones", headers=headers)
    body = assert_error(response, 429, "rate_limit_exceeded", "/zones")
    assert int(response.headers["retry-after"]) >= 1
    assert "rate limit" in body["message"]
    # Operations endpoints are not limited.
    assert limited_client.get("/healthz").status_code == 200
    # Unknown tokens get 401, not 429 (they have no allowance to spend).
    assert_error(limited_client.get("/zones", headers=bearer("zc_other")), 401, "unauthorized")


def test_healthz_readyz_metrics(api: Api) -> None:
    zone = api.new_zone()
    api.install(zone, CALENDAR, CREDS)
    health = api.client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}
    metrics = api.client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert "# TYPE zonecat_http_requests_total counter" in text
    assert 'zonecat_http_requests_total{method="POST",status="202"} 1' in text
    assert "zonecat_http_request_duration_seconds_count" in text
    assert 'zonecat_tasks{operation="create",status="completed"} 1' in text


def test_readyz_is_503_while_shutting_down(settings: Settings, sqlite_db: Database) -> None:
    ctx = AppContext(db=sqlite_db, settings=settings, limiter=RateLimiter(0, 1))
    with TestClient(create_app(ctx)) as client:
        ctx.shutting_down.set()
        response = client.get("/readyz")
        assert_error(response, 503, "service_unavailable", "/readyz")
        assert response.headers["retry-after"]


def test_openapi_has_no_422_and_documents_errors(api: Api) -> None:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert "422" not in response.text.replace("4220", "")
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    error_schema_name = next(name for name in schemas if name == "Error")
    error_schema = schemas[error_schema_name]
    assert set(error_schema["properties"]) == {
        "code",
        "message",
        "status",
        "path",
        "request_id",
        "timestamp",
        "details",
    }
    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            if path in ("/healthz", "/metrics", "/openapi.json"):
                continue
            operations += 1
            four_xx = [code for code in responses if code.startswith("4")]
            assert "400" in four_xx and "401" in four_xx and "404" in four_xx, (method, path)
            for code in four_xx:
                ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error", (method, path, code)
            if method != "get":
                assert "403" in four_xx, (method, path)
    assert operations >= 30
    paths = document["paths"]
    for path in (
        "/zones/{zone_id}/packages",
        "/zones/{zone_id}/packages/{package_id}",
        "/zones/{zone_id}/packages/{package_id}/draft",
        "/zones/{zone_id}/packages/{package_id}/versions",
        "/zones/{zone_id}/packages/{package_id}/versions/{version_id}",
        "/zones/{zone_id}/installs",
        "/zones/{zone_id}/installs/{install_id}",
        "/zones/{zone_id}/catalog_tasks/{task_id}",
        "/zones/{zone_id}/catalog_tasks",
        "/zones/{zone_id}/entities",
        "/tokens",
    ):
        assert path in paths, path
    assert "303" in paths["/zones/{zone_id}/catalog_tasks/{task_id}"]["get"]["responses"]
    assert "202" in paths["/zones/{zone_id}/installs"]["post"]["responses"]
    assert "202" in paths["/zones/{zone_id}/installs/{install_id}"]["delete"]["responses"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_json_numbers_are_bad_request(api: Api, literal: bytes) -> None:
    zone = api.new_zone()
    headers = {**api.auth, "Content-Type": "application/json"}
    path = f"/zones/{zone}/installs"
    body = b'{"package_id": "google-calendar-api", "inputs": {"client_id": "a", "client_secret": "b", "x": ' + literal
    response = api.client.post(path, headers=headers, content=body + b"}}")
    assert fields(assert_error(response, 400, "bad_request", path)) == ["body"]
    path = f"/zones/{zone}/providers"
    response = api.client.post(
        path, headers=headers, content=b'{"identifier": "i", "name": "n", "metadata": {"x": ' + literal + b"}}"
    )
    assert_error(response, 400, "bad_request", path)
    # Nothing was stored, and the lists still render.
    assert api.get(f"/zones/{zone}/installs").json()["items"] == []
    assert api.get(f"/zones/{zone}/providers").json()["items"] == []


def test_internal_error_has_the_error_body_and_request_id(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(zone_store, "list_zones", explode)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    client_id = str(uuid.uuid4())
    response = client.get("/zones", headers={**api.auth, "X-Client-Request-ID": client_id})
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"code", "message", "status", "path", "request_id", "timestamp", "details"}
    assert body["code"] == "internal_error"
    assert body["status"] == 500
    assert body["request_id"] == client_id
    assert response.headers["x-request-id"] == client_id
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text
    monkeypatch.undo()
    assert 'zonecat_http_requests_total{method="GET",status="500"} 1' in api.client.get("/metrics").text
