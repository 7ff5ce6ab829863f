"""Installs: create (202 + Location), list, get, delete (design §2, §3.1), input validation."""

from __future__ import annotations

import json

from tests.api.conftest import Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    LINEAR,
    assert_error,
    create_package,
    delete_and_wait,
    fields,
    pause_worker,
    run_due_tasks,
    simple_manifest,
    start_delete,
    start_install,
)

TASK_KEYS = {
    "id",
    "created_at",
    "updated_at",
    "operation",
    "status",
    "install_id",
    "package_id",
    "package_slug",
    "package_version",
    "links",
    "warnings",
}
INSTALL_KEYS = {
    "id",
    "created_at",
    "updated_at",
    "package_id",
    "package_slug",
    "package_version",
    "status",
    "inputs",
    "org_id",
    "zone_id",
    "links",
}


def test_create_returns_202_task_with_absolute_location(api: Api) -> None:
    zone = api.new_zone()
    package = api.get(f"/zones/{zone}/packages/{CALENDAR}").json()
    response = start_install(api, zone, CALENDAR, CREDS)
    assert response.status_code == 202
    task = response.json()
    assert set(task) == TASK_KEYS
    assert task["operation"] == "create"
    assert task["status"] in ("pending", "running", "completed")
    assert task["package_id"] == package["id"]
    assert task["package_slug"] == CALENDAR
    assert task["package_version"] == 1
    assert task["warnings"] == []
    assert len(task["id"]) <= 26 and len(task["install_id"]) <= 26
    assert response.headers["location"] == f"http://testserver/zones/{zone}/catalog_tasks/{task['id']}"

    finished = api.wait_task(zone, task["id"])
    assert finished["status"] == "completed"
    assert "error_message" not in finished
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}")
    assert install.status_code == 200
    body = install.json()
    assert set(body) == INSTALL_KEYS | {"outputs"}
    assert body["status"] == "active"
    assert body["package_slug"] == CALENDAR
    assert body["package_version"] == 1
    assert body["zone_id"] == zone
    assert body["org_id"] == "default"
    assert set(body["outputs"]) == {"resource_id", "provider_id"}
    assert {link["rel"] for link in body["links"]} == {"created"}
    assert {link["href"] for link in body["links"]} == {
        f"/zones/{zone}/providers/{body['outputs']['provider_id']}",
        f"/zones/{zone}/resources/{body['outputs']['resource_id']}",
    }


def test_install_by_package_id_and_explicit_version(api: Api) -> None:
    zone = api.new_zone()
    package = create_package(api, zone, simple_manifest("Pinned"))
    manifest = simple_manifest("Pinned")
    manifest["description"] = "v2"
    api.put(f"/zones/{zone}/packages/{package['id']}/draft", json={"manifest": manifest})
    assert api.post(f"/zones/{zone}/packages/{package['id']}/versions").status_code == 201
    task = api.install(zone, package["id"], {"app_name": "a"}, version=1)
    assert task["status"] == "completed"
    assert task["package_version"] == 1
    assert api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["package_version"] == 1
    response = api.post(f"/zones/{zone}/installs", json={"package_id": package["id"], "inputs": {}, "version": 9})
    assert_error(response, 404, "not_found")
    response = api.post(f"/zones/{zone}/installs", json={"package_id": package["id"], "version": "1"})
    assert fields(assert_error(response, 400, "validation_error")) == ["version"]


def test_a_large_install_body_installs_the_same(api: Api) -> None:
    # A body padded with 20 KB of whitespace installs the same, by package id or slug, with or without a version.
    zone = api.new_zone()
    package = create_package(api, zone, simple_manifest("Padded"))
    for extra in ({}, {"version": 1}):
        for ref in (package["id"], package["slug"]):
            body = json.dumps({"package_id": ref, "inputs": {"app_name": "a"}, **extra})
            padded = body[:-1] + " " * 20_000 + "}"
            response = api.client.post(
                f"/zones/{zone}/installs", headers={**api.auth, "Content-Type": "application/json"}, content=padded
            )
            assert response.status_code == 202, response.text
            assert api.wait_task(zone, response.json()["id"])["status"] == "completed"
    unknown = body[:-1].replace(package["slug"], "no-such-package") + " " * 20_000 + "}"
    response = api.client.post(f"/zones/{zone}/installs", headers=api.auth, content=unknown)
    assert_error(response, 404, "not_found")


def test_write_only_inputs_are_never_returned(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, {"client_id": "visible-id", "client_secret": "TOPSECRET-123"})
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}")
    assert install.json()["inputs"] == {
        "client_id": "visible-id",
        "scopes": ["https://www.googleapis.com/auth/calendar"],  # the schema's default was applied
    }
    for text in (
        install.text,
        api.get(f"/zones/{zone}/installs").text,
        api.get(f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false").text,
        api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events").text,
        api.get(f"/zones/{zone}/entities").text,
        api.get(f"/zones/{zone}/providers").text,
    ):
        assert "TOPSECRET-123" not in text


def test_input_validation_errors_name_each_field(api: Api) -> None:
    zone = api.new_zone()
    path = f"/zones/{zone}/installs"
    body = assert_error(start_install(api, zone, CALENDAR, {}), 400, "validation_error", path)
    assert sorted(fields(body)) == ["inputs.client_id", "inputs.client_secret"]
    body = assert_error(
        start_install(api, zone, CALENDAR, {"client_id": 5, "client_secret": "x", "scopes": ["ok", 7]}),
        400,
        "validation_error",
    )
    assert sorted(fields(body)) == ["inputs.client_id", "inputs.scopes[1]"]
    body = assert_error(start_install(api, zone, LINEAR, {**CREDS, "scopes": ["read", "fly"]}), 400, "validation_error")
    assert fields(body) == ["inputs.scopes[1]"]
    body = assert_error(api.post(path, json={"inputs": CREDS}), 400, "validation_error")
    assert fields(body) == ["package_id"]
    body = assert_error(api.post(path, json={"package_id": CALENDAR, "inputs": [1]}), 400, "validation_error")
    assert fields(body) == ["inputs"]
    assert_error(api.post(path, json={"package_id": "no-such-package", "inputs": CREDS}), 404, "not_found", path)
    # Nothing was created by any of these.
    assert api.get(path).json()["items"] == []
    assert api.get(f"/zones/{zone}/catalog_tasks").json()["items"] == []


def test_list_and_get_installs(api: Api) -> None:
    zone = api.new_zone()
    first = api.install(zone, CALENDAR, CREDS)
    second = api.install(zone, LINEAR, CREDS)
    listed = api.get(f"/zones/{zone}/installs")
    assert listed.status_code == 200
    body = listed.json()
    assert set(body) == {"items", "pagination"}
    assert [item["id"] for item in body["items"]] == [second["install_id"], first["install_id"]]
    assert all(set(item) >= INSTALL_KEYS for item in body["items"])
    assert body["pagination"] == {"after_cursor": None, "before_cursor": None}
    counted = api.get(f"/zones/{zone}/installs?expand[]=total_count&limit=1").json()
    assert counted["pagination"]["total_count"] == 2
    assert [item["id"] for item in counted["items"]] == [second["install_id"]]
    assert_error(
        api.get(f"/zones/{zone}/installs/ins_missing"), 404, "not_found", f"/zones/{zone}/installs/ins_missing"
    )
    # Installs of another zone are invisible here.
    other = api.new_zone()
    assert_error(api.get(f"/zones/{other}/installs/{first['install_id']}"), 404, "not_found")
    assert_error(start_delete(api, other, first["install_id"]), 404, "not_found")
    assert api.get(f"/zones/{other}/installs").json()["items"] == []
    # The status filter.
    assert [i["id"] for i in api.get(f"/zones/{zone}/installs?status=active").json()["items"]] == [
        second["install_id"],
        first["install_id"],
    ]
    assert api.get(f"/zones/{zone}/installs?status=deleted").json()["items"] == []
    assert_error(api.get(f"/zones/{zone}/installs?status=gone"), 400, "bad_request")


def test_delete_lifecycle(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    install_id = task["install_id"]
    response = start_delete(api, zone, install_id, **{"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == TASK_KEYS
    assert accepted["operation"] == "delete"
    assert accepted["install_id"] == install_id
    assert accepted["warnings"] == []
    assert response.headers["location"] == f"http://testserver/zones/{zone}/catalog_tasks/{accepted['id']}"
    finished = api.wait_task(zone, accepted["id"])
    assert finished["status"] == "completed"
    assert {link["rel"] for link in finished["links"]} == {"deleted"}
    install = api.get(f"/zones/{zone}/installs/{install_id}").json()
    assert install["status"] == "deleted"
    assert install["links"] == []
    assert api.get(f"/zones/{zone}/entities").json()["items"] == []
    # A deleted install stays listed.
    assert [item["status"] for item in api.get(f"/zones/{zone}/installs").json()["items"]] == ["deleted"]

    # DELETE on a deleted install returns its last delete task.
    again = start_delete(api, zone, install_id)
    assert again.status_code == 202
    assert again.json()["id"] == accepted["id"]
    assert again.json()["status"] == "completed"
    tasks = api.get(f"/zones/{zone}/catalog_tasks?install_id={install_id}").json()["items"]
    assert [t["operation"] for t in tasks] == ["delete", "create"]


def test_delete_twice_returns_the_same_task(api: Api) -> None:
    zone = api.new_zone()
    install_id = api.install(zone, CALENDAR, CREDS)["install_id"]
    pause_worker(api)
    first = start_delete(api, zone, install_id)
    second = start_delete(api, zone, install_id)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["status"] == second.json()["status"] == "pending"
    assert api.get(f"/zones/{zone}/installs/{install_id}").json()["status"] == "deleting"
    assert len(api.get(f"/zones/{zone}/catalog_tasks?operation=delete").json()["items"]) == 1
    assert run_due_tasks(api) == 1
    finished = api.wait_task(zone, first.json()["id"])
    assert finished["status"] == "completed"
    assert start_delete(api, zone, install_id).json()["id"] == first.json()["id"]


def test_delete_while_creating_is_409(api: Api) -> None:
    zone = api.new_zone()
    pause_worker(api)
    task = start_install(api, zone, CALENDAR, CREDS).json()
    assert api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["status"] == "pending"
    body = assert_error(start_delete(api, zone, task["install_id"]), 409, "conflict")
    assert task["id"] in body["message"]
    assert run_due_tasks(api) == 1
    assert api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["status"] == "active"


def test_delete_of_a_failed_install(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Fails At Runtime")
    manifest["entities"]["app"]["bindings"] = '{"identifier": entities.inputs.missing_key, "name": "n"}'
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"], {"app_name": "a"})
    assert task["status"] == "failed"
    install_id = task["install_id"]
    assert api.get(f"/zones/{zone}/installs/{install_id}").json()["status"] == "failed"
    accepted, finished = delete_and_wait(api, zone, install_id)
    assert accepted["operation"] == "delete"
    assert finished["status"] == "completed"
    assert api.get(f"/zones/{zone}/installs/{install_id}").json()["status"] == "deleted"
    # The package can go now.
    assert api.delete(f"/zones/{zone}/packages/{package['id']}").status_code == 204


def test_a_missing_or_hidden_zone_is_a_404_whatever_the_body_and_the_idempotency_key(api: Api) -> None:
    zone = api.new_zone()
    headers = {**api.auth, "Idempotency-Key": "zone-first"}
    for body in ({}, {"package_id": 7}, {"package_id": "github-api", "inputs": []}, {"package_id": "github-api"}):
        missing = api.post("/zones/zon_missing/installs", json=body, headers=headers)
        assert_error(missing, 404, "not_found")
    assert fields(assert_error(api.post(f"/zones/{zone}/installs", json={}), 400, "validation_error")) == ["package_id"]
    # A replay is answered only on a zone the token can see.
    first = api.post(f"/zones/{zone}/installs", json={"package_id": "github-api", "inputs": CREDS}, headers=headers)
    assert first.status_code == 202, first.text
    replay = api.post(f"/zones/{zone}/installs", json={"package_id": "github-api", "inputs": CREDS}, headers=headers)
    assert replay.status_code == 202 and replay.json()["id"] == first.json()["id"]
