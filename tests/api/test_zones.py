"""Zones: create, list, get, patch, delete (design §3.2)."""

from __future__ import annotations

import re

from tests.api.conftest import Api
from tests.api.helpers import CALENDAR, CREDS, assert_error, create_package, delete_and_wait, fields, simple_manifest

ZONE_KEYS = {"id", "name", "description", "organization_id", "created_at", "updated_at"}
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_create_get_list_patch_delete(api: Api) -> None:
    created = api.post("/zones", json={"name": "prod", "description": "production"})
    assert created.status_code == 201
    zone = created.json()
    assert set(zone) == ZONE_KEYS
    assert zone["name"] == "prod"
    assert zone["description"] == "production"
    assert zone["organization_id"] == "default"
    assert len(zone["id"]) <= 26
    assert RFC3339_MS.match(zone["created_at"]) and RFC3339_MS.match(zone["updated_at"])

    fetched = api.get(f"/zones/{zone['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == zone

    listed = api.get("/zones")
    assert listed.status_code == 200
    assert [z["id"] for z in listed.json()["items"]] == [zone["id"]]
    assert listed.json()["pagination"] == {"after_cursor": None, "before_cursor": None}

    patched = api.patch(f"/zones/{zone['id']}", json={"name": "production", "description": None})
    assert patched.status_code == 200
    assert patched.json()["name"] == "production"
    assert patched.json()["description"] is None
    assert patched.json()["created_at"] == zone["created_at"]
    assert api.get(f"/zones/{zone['id']}").json()["name"] == "production"

    deleted = api.delete(f"/zones/{zone['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(api.get(f"/zones/{zone['id']}"), 404, "not_found", f"/zones/{zone['id']}")
    assert_error(api.delete(f"/zones/{zone['id']}"), 404, "not_found")
    assert api.get("/zones").json()["items"] == []


def test_zone_names_are_unique(api: Api) -> None:
    api.new_zone("one")
    other = api.new_zone("two")
    assert_error(api.post("/zones", json={"name": "one"}), 409, "conflict", "/zones")
    assert_error(api.patch(f"/zones/{other}", json={"name": "one"}), 409, "conflict")


def test_zone_body_is_validated(api: Api) -> None:
    body = assert_error(api.post("/zones", json={}), 400, "validation_error")
    assert fields(body) == ["name"]
    body = assert_error(api.post("/zones", json={"name": ""}), 400, "validation_error")
    assert fields(body) == ["name"]
    body = assert_error(api.post("/zones", json={"name": "x", "description": 5}), 400, "validation_error")
    assert fields(body) == ["description"]
    assert_error(api.post("/zones", json=["name"]), 400, "bad_request")


def test_unknown_zone_is_404_everywhere(api: Api) -> None:
    for method, path in [
        ("GET", "/zones/zon_nope"),
        ("PATCH", "/zones/zon_nope"),
        ("DELETE", "/zones/zon_nope"),
        ("GET", "/zones/zon_nope/packages"),
        ("GET", "/zones/zon_nope/installs"),
        ("POST", "/zones/zon_nope/installs"),
        ("GET", "/zones/zon_nope/catalog_tasks"),
        ("GET", "/zones/zon_nope/entities"),
        ("GET", "/zones/zon_nope/providers"),
        ("POST", "/zones/zon_nope/providers"),
    ]:
        json = {"name": "x"} if method == "PATCH" else {"package_id": CALENDAR, "inputs": CREDS}
        if path.endswith("providers") and method == "POST":
            json = {"identifier": "https://x", "name": "x"}
        response = api.client.request(method, path, headers=api.auth, json=json if method != "GET" else None)
        assert_error(response, 404, "not_found", path)


def test_delete_zone_with_live_install_is_409(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    assert task["status"] == "completed"
    body = assert_error(api.delete(f"/zones/{zone}"), 409, "conflict", f"/zones/{zone}")
    assert "install" in body["message"]
    assert api.get(f"/zones/{zone}").status_code == 200

    _, finished = delete_and_wait(api, zone, task["install_id"])
    assert finished["status"] == "completed"
    assert api.delete(f"/zones/{zone}").status_code == 204
    assert api.get(f"/zones/{zone}").status_code == 404


def test_delete_zone_with_failed_install_is_409(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Fails")
    manifest["entities"]["app"]["bindings"] = '{"identifier": entities.inputs.nope, "name": "n"}'
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"], {"app_name": "x"})
    assert task["status"] == "failed"
    assert_error(api.delete(f"/zones/{zone}"), 409, "conflict")
    delete_and_wait(api, zone, task["install_id"])
    assert api.delete(f"/zones/{zone}").status_code == 204
