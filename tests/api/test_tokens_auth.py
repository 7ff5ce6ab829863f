"""Tokens (design §3.2) and what each kind of token may see and do (design §1, §3.3)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import ADMIN_TOKEN, Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    assert_error,
    bearer,
    create_package,
    make_token,
    simple_manifest,
)
from zonecat.engine.bootstrap import ensure_admin_token

TOKEN_KEYS = {"id", "name", "zones", "read_only", "created_at"}


def test_create_list_revoke(api: Api) -> None:
    zone = api.new_zone()
    created = api.post("/tokens", json={"name": "ci", "zones": [zone], "read_only": True})
    assert created.status_code == 201
    body = created.json()
    assert TOKEN_KEYS | {"token"} <= set(body)
    assert body["name"] == "ci"
    assert body["zones"] == [zone]
    assert body["read_only"] is True
    assert isinstance(body["token"], str) and len(body["token"]) >= 32

    listed = api.get("/tokens")
    assert listed.status_code == 200
    items = {item["id"]: item for item in listed.json()["items"]}
    assert body["id"] in items
    assert "token" not in items[body["id"]]
    assert body["token"] not in listed.text
    assert TOKEN_KEYS <= set(items[body["id"]])

    # The new token works (reads in its zone) ...
    assert api.get(f"/zones/{zone}", headers=bearer(body["token"])).status_code == 200
    # ... and is refused at once after revocation.
    assert api.delete(f"/tokens/{body['id']}").status_code == 204
    assert_error(api.get(f"/zones/{zone}", headers=bearer(body["token"])), 401, "unauthorized")
    assert body["id"] not in {item["id"] for item in api.get("/tokens").json()["items"]}
    assert_error(api.delete(f"/tokens/{body['id']}"), 404, "not_found")


def test_token_body_is_validated(api: Api) -> None:
    assert_error(api.post("/tokens", json={}), 400, "validation_error")
    assert_error(api.post("/tokens", json={"name": "x", "zones": "z"}), 400, "validation_error")
    assert_error(api.post("/tokens", json={"name": "x", "zones": ["zon_missing"]}), 400, "validation_error")
    assert_error(api.post("/tokens", json={"name": "x", "read_only": "yes"}), 400, "validation_error")


def test_unauthenticated_requests_are_401(api: Api) -> None:
    zone = api.new_zone()
    for headers in ({}, bearer("zc_unknown"), {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        assert_error(api.client.get(f"/zones/{zone}", headers=headers), 401, "unauthorized", f"/zones/{zone}")
        assert_error(api.client.get("/zones", headers=headers), 401, "unauthorized")
        assert_error(
            api.client.post(f"/zones/{zone}/installs", headers=headers, json={"package_id": CALENDAR}),
            401,
            "unauthorized",
        )
        # The token is checked before the body is looked at, and before the install or the zone is looked for.
        for body in (b"{not json", b"[1, 2]", b""):
            response = api.client.post(f"/zones/{zone}/installs", headers=headers, content=body)
            assert_error(response, 401, "unauthorized")
        # Also where the zone or the package does not exist (on PostgreSQL all three are read in one round trip).
        missing_zone = api.client.post("/zones/zon_missing/installs", headers=headers, json={"package_id": "pkg_x"})
        assert_error(missing_zone, 401, "unauthorized")
        assert_error(
            api.client.post(f"/zones/{zone}/installs", headers=headers, json={"package_id": "pkg_missing"}),
            401,
            "unauthorized",
        )
        assert_error(api.client.delete(f"/zones/{zone}/installs/ins_missing", headers=headers), 401, "unauthorized")
        assert_error(api.client.delete("/zones/zon_missing/installs/ins_missing", headers=headers), 401, "unauthorized")
        # Also a body holding an integer too long for Python to read (a ValueError, not a JSONDecodeError).
        too_long = b'{"package_id": "x", "n": ' + b"1" * 5000 + b"}"
        assert_error(api.client.post(f"/zones/{zone}/installs", headers=headers, content=too_long), 401, "unauthorized")
        # Also a body over the size limit without a Content-Length (chunked), which only reading it reveals.
        oversized = api.client.post(f"/zones/{zone}/installs", headers=headers, content=_chunks(2 * 1024 * 1024))
        assert_error(oversized, 401, "unauthorized")
    read_only = bearer(make_token(api, "ro-big", read_only=True)["token"])
    oversized = api.client.post(f"/zones/{zone}/installs", headers=read_only, content=_chunks(2 * 1024 * 1024))
    assert_error(oversized, 403, "forbidden")
    admin = bearer(ADMIN_TOKEN)
    too_large = api.client.post(f"/zones/{zone}/installs", headers=admin, content=_chunks(2 * 1024 * 1024))
    assert_error(too_large, 400, "bad_request")
    too_long = b'{"package_id": "x", "n": ' + b"1" * 5000 + b"}"
    assert_error(api.client.post(f"/zones/{zone}/installs", headers=admin, content=too_long), 400, "bad_request")


def _chunks(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """A request body of ``size`` bytes sent chunked (an iterator: no Content-Length)."""
    for start in range(0, size, chunk):
        yield b" " * min(chunk, size - start)


def test_revoked_token_is_refused_immediately(api: Api) -> None:
    token = make_token(api, "short-lived")
    assert api.get("/zones", headers=bearer(token["token"])).status_code == 200
    assert api.delete(f"/tokens/{token['id']}").status_code == 204
    assert_error(api.get("/zones", headers=bearer(token["token"])), 401, "unauthorized")
    assert_error(api.post("/zones", headers=bearer(token["token"]), json={"name": "z"}), 401, "unauthorized")
    zone = api.new_zone()
    install = api.post(f"/zones/{zone}/installs", headers=bearer(token["token"]), json={"package_id": CALENDAR})
    assert_error(install, 401, "unauthorized")
    assert api.get(f"/zones/{zone}/installs").json()["items"] == []


def test_non_admin_tokens_cannot_manage_tokens(api: Api) -> None:
    zone = api.new_zone()
    admin_tokens = api.get("/tokens").json()["items"]
    target = admin_tokens[0]["id"]
    for token in (make_token(api, "rw")["token"], make_token(api, "zoned", zones=[zone])["token"]):
        headers = bearer(token)
        assert_error(api.get("/tokens", headers=headers), 403, "forbidden", "/tokens")
        assert_error(api.post("/tokens", headers=headers, json={"name": "x"}), 403, "forbidden")
        assert_error(api.delete(f"/tokens/{target}", headers=headers), 403, "forbidden")


def _writes(api: Api, zone: str, package_id: str, install_id: str, entity_id: str) -> list[tuple[str, str, Any]]:
    manifest = simple_manifest("Another Package")
    return [
        ("POST", "/zones", {"name": "new"}),
        ("PATCH", f"/zones/{zone}", {"name": "renamed"}),
        ("DELETE", f"/zones/{zone}", None),
        ("POST", f"/zones/{zone}/packages", {"manifest": manifest}),
        ("PUT", f"/zones/{zone}/packages/{package_id}/draft", {"manifest": manifest}),
        ("POST", f"/zones/{zone}/packages/{package_id}/versions", {}),
        ("POST", f"/zones/{zone}/packages/{package_id}/versions/1/archive", None),
        ("DELETE", f"/zones/{zone}/packages/{package_id}", None),
        ("POST", f"/zones/{zone}/installs", {"package_id": CALENDAR, "inputs": CREDS}),
        ("DELETE", f"/zones/{zone}/installs/{install_id}", None),
        ("POST", f"/zones/{zone}/providers", {"identifier": "https://p.example", "name": "P"}),
        ("PATCH", f"/zones/{zone}/applications/{entity_id}", {"name": "n"}),
        ("DELETE", f"/zones/{zone}/applications/{entity_id}", None),
        ("POST", "/tokens", {"name": "t"}),
    ]


def _fixture_objects(api: Api) -> tuple[str, str, str, str]:
    zone = api.new_zone()
    package = create_package(api, zone, simple_manifest("Writable Package"))
    task = api.install(zone, package["id"], {"app_name": "A"})
    assert task["status"] == "completed"
    entity = api.post(f"/zones/{zone}/applications", json={"identifier": "https://a.example", "name": "A"})
    assert entity.status_code == 201
    return zone, package["id"], task["install_id"], entity.json()["id"]


def test_read_only_token_is_403_on_every_write(api: Api) -> None:
    zone, package_id, install_id, entity_id = _fixture_objects(api)
    read_only = bearer(make_token(api, "ro", read_only=True)["token"])
    for method, path, body in _writes(api, zone, package_id, install_id, entity_id):
        response = api.client.request(method, path, headers=read_only, json=body)
        assert_error(response, 403, "forbidden", path)
    # Nothing changed, and reads work.
    assert api.get(f"/zones/{zone}", headers=read_only).json()["name"] != "renamed"
    assert api.get(f"/zones/{zone}/installs/{install_id}", headers=read_only).json()["status"] == "active"
    assert len(api.get(f"/zones/{zone}/installs", headers=read_only).json()["items"]) == 1


def test_zone_limited_token_cannot_create_zones(api: Api) -> None:
    zone = api.new_zone()
    limited = bearer(make_token(api, "zoned", zones=[zone])["token"])
    assert_error(api.post("/zones", headers=limited, json={"name": "mine"}), 403, "forbidden", "/zones")
    assert [z["id"] for z in api.get("/zones", headers=limited).json()["items"]] == [zone]


def test_zone_limited_token_gets_404_for_other_zones_everywhere(api: Api) -> None:
    mine = api.new_zone("mine")
    zone, package_id, install_id, entity_id = _fixture_objects(api)
    task_id = api.get(f"/zones/{zone}/catalog_tasks").json()["items"][0]["id"]
    limited = bearer(make_token(api, "zoned", zones=[mine])["token"])
    reads = [
        f"/zones/{zone}",
        f"/zones/{zone}/packages",
        f"/zones/{zone}/packages/{package_id}",
        f"/zones/{zone}/packages/{CALENDAR}",
        f"/zones/{zone}/packages/{package_id}/draft",
        f"/zones/{zone}/packages/{package_id}/versions",
        f"/zones/{zone}/packages/{package_id}/versions/1",
        f"/zones/{zone}/installs",
        f"/zones/{zone}/installs/{install_id}",
        f"/zones/{zone}/installs/{install_id}/graph",
        f"/zones/{zone}/catalog_tasks",
        f"/zones/{zone}/catalog_tasks/{task_id}",
        f"/zones/{zone}/catalog_tasks/{task_id}/events",
        f"/zones/{zone}/entities",
        f"/zones/{zone}/entities/{entity_id}",
        *(f"/zones/{zone}/{c}" for c in ("providers", "resources", "applications", "application-credentials")),
        f"/zones/{zone}/secrets",
        f"/zones/{zone}/applications/{entity_id}",
    ]
    for path in reads:
        assert_error(api.get(path, headers=limited), 404, "not_found", path)
    for method, path, body in _writes(api, zone, package_id, install_id, entity_id):
        if not path.startswith(f"/zones/{zone}"):
            continue
        response = api.client.request(method, path, headers=limited, json=body)
        assert_error(response, 404, "not_found", path)
    # Its own zone works normally, and the other zone is untouched.
    assert api.get(f"/zones/{mine}/packages", headers=limited).status_code == 200
    assert api.get(f"/zones/{zone}/installs/{install_id}").json()["status"] == "active"
    assert api.get(f"/zones/{zone}").json()["name"] != "renamed"


def test_admin_token_is_listed_without_secret(api: Api) -> None:
    listed = api.get("/tokens").json()["items"]
    assert len(listed) == 1
    assert ADMIN_TOKEN not in str(listed)
    assert set(listed[0]) >= TOKEN_KEYS


def test_a_revoked_bootstrap_token_stays_revoked_and_start_up_says_so(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    own = [t for t in api.get("/tokens").json()["items"] if t["name"].startswith("bootstrap")]
    assert len(own) == 1
    assert api.delete(f"/tokens/{own[0]['id']}").status_code == 204
    with caplog.at_level(logging.WARNING, logger="zonecat.bootstrap"):
        assert ensure_admin_token(api.db, ADMIN_TOKEN) is None  # as at a restart with ZONECAT_BOOTSTRAP_TOKEN
    warned = [r for r in caplog.records if "ZONECAT_BOOTSTRAP_TOKEN names a token that was revoked" in r.message]
    assert len(warned) == 1
    assert warned[0].__dict__["admin_tokens_left"] == 0
    assert api.get("/zones").status_code == 401
