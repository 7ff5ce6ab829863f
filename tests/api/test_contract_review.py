"""Regressions found by the contract review (design sections 1 to 7 against the implementation)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from tests.api.conftest import Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    assert_error,
    create_package,
    fields,
    pause_worker,
    run_due_tasks,
    simple_manifest,
    start_delete,
    start_install,
)
from zonecat.logs import JsonFormatter
from zonecat.store import installs as install_store
from zonecat.store import tasks as task_store
from zonecat.store.prepared import Answer


def test_install_version_beyond_int32_is_a_validation_error_not_a_500(api: Api) -> None:
    zone = api.new_zone()
    for version in (10**30, 2**31, 0, -1):
        response = api.post(
            f"/zones/{zone}/installs", json={"package_id": CALENDAR, "inputs": CREDS, "version": version}
        )
        body = assert_error(response, 400, "validation_error")
        assert fields(body) == ["version"]
    assert api.get(f"/zones/{zone}/installs").json()["items"] == []


def _nested_secret_manifest(name: str) -> dict[str, Any]:
    manifest = simple_manifest(name)
    manifest["inputs"]["schema"]["properties"]["oauth"] = {
        "type": "object",
        "properties": {"secret": {"type": "string", "writeOnly": True}, "id": {"type": "string"}},
    }
    manifest["inputs"]["schema"]["properties"]["keys"] = {
        "type": "array",
        "items": {"type": "object", "properties": {"value": {"type": "string", "writeOnly": True}}},
    }
    manifest["inputs"]["bindings"] = (
        '{"app_name": pkg.inputs.app_name + "-" + pkg.inputs.oauth.secret + "-" + pkg.inputs.keys[0].value}'
    )
    return manifest


def test_nested_write_only_inputs_are_never_returned_but_reach_the_bindings(api: Api) -> None:
    zone = api.new_zone()
    package = create_package(api, zone, _nested_secret_manifest("Nested Secrets"))
    task = api.install(
        zone,
        package["id"],
        {
            "app_name": "a",
            "token": "TOPSECRET-1",
            "oauth": {"secret": "TOPSECRET-2", "id": "x"},
            "keys": [{"value": "K3"}],
        },
    )
    assert task["status"] == "completed", task
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    assert install["inputs"] == {"app_name": "a", "oauth": {"id": "x"}, "keys": [{}]}
    listed = api.get(f"/zones/{zone}/installs").json()["items"][0]
    assert "TOPSECRET" not in json.dumps(listed)
    # The provisioner still saw the full values (its binding concatenated them into the entity's name).
    entities = api.get(f"/zones/{zone}/applications").json()["items"]
    assert entities[0]["name"] == "a-TOPSECRET-2-K3"


def test_write_only_outputs_are_not_returned(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Secret Output")
    manifest["outputs"] = {
        "schema": {
            "type": "object",
            "properties": {"app_id": {"type": "string"}, "echo": {"type": "string", "writeOnly": True}},
        },
        "bindings": '{"app_id": entities.app.outputs.id, "echo": entities.inputs.token}',
    }
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"], {"app_name": "a", "token": "TOPSECRET-OUT"})
    assert task["status"] == "completed", task
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    assert set(install["outputs"]) == {"app_id"}
    assert "TOPSECRET" not in json.dumps(api.get(f"/zones/{zone}/installs").json())


def test_kind_filter_matches_the_kind_the_package_shows(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Kind Switch")
    package = create_package(api, zone, manifest)  # version 1: custom
    changed = {**manifest, "kind": "mcp-server"}
    assert api.put(f"/zones/{zone}/packages/{package['id']}/draft", json={"manifest": changed}).status_code == 200

    def listed(kind: str) -> list[tuple[str, str]]:
        items = api.get(f"/zones/{zone}/packages?kind={kind}&filters[slug]=kind-switch").json()["items"]
        return [(item["slug"], item["kind"]) for item in items]

    # The draft changed, the current version did not: the package shows (and is listed as) custom.
    assert listed("custom") == [("kind-switch", "custom")]
    assert listed("mcp-server") == []
    released = api.post(f"/zones/{zone}/packages/{package['id']}/versions", json={})
    assert released.status_code == 201, released.text
    assert listed("mcp-server") == [("kind-switch", "mcp-server")]
    assert listed("custom") == []
    # Archiving version 2 makes version 1 current again.
    archived = api.post(f"/zones/{zone}/packages/{package['id']}/versions/2/archive")
    assert archived.status_code == 200, archived.text
    assert listed("custom") == [("kind-switch", "custom")]


def test_if_match_star_and_lists_follow_rfc_9110(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("If Match")
    package = create_package(api, zone, manifest, release=False)
    path = f"/zones/{zone}/packages/{package['id']}/draft"
    sha = api.get(path).json()["manifest_sha"]
    star = api.put(path, json={"manifest": {**manifest, "description": "one"}}, headers={**api.auth, "If-Match": "*"})
    assert star.status_code == 200, star.text
    sha = star.json()["manifest_sha"]
    listed = api.put(
        path,
        json={"manifest": {**manifest, "description": "two"}},
        headers={**api.auth, "If-Match": f'"stale", "{sha}"'},
    )
    assert listed.status_code == 200, listed.text
    weak = api.put(
        path,
        json={"manifest": manifest},
        headers={**api.auth, "If-Match": f'W/"{listed.json()["manifest_sha"]}"'},
    )
    assert_error(weak, 409, "conflict")


def test_overlong_kind_is_refused_at_draft_time(api: Api) -> None:
    zone = api.new_zone()
    manifest = {**simple_manifest("Long Kind"), "kind": "k" * 65}
    body = assert_error(api.post(f"/zones/{zone}/packages", json={"manifest": manifest}), 400, "validation_error")
    assert fields(body) == ["manifest.kind"]


def test_nul_characters_in_a_body_are_a_bad_request(api: Api) -> None:
    zone = api.new_zone()
    body = assert_error(api.post("/zones", json={"name": "a\u0000b"}), 400, "bad_request")
    assert fields(body) == ["name"]
    response = api.post(f"/zones/{zone}/providers", json={"identifier": "https://x.example", "name": "N\u0000"})
    assert_error(response, 400, "bad_request")
    # An escaped backslash followed by "u0000" is an ordinary string.
    ok = api.client.post(
        "/zones",
        content=b'{"name": "back\\\\u0000slash"}',
        headers={**api.auth, "Content-Type": "application/json"},
    )
    assert ok.status_code == 201, ok.text


def test_typed_entity_bodies_that_are_not_objects_are_bad_requests_like_everywhere_else(api: Api) -> None:
    zone = api.new_zone()
    assert_error(api.post(f"/zones/{zone}/providers", json=["x"]), 400, "bad_request")
    created = api.post(f"/zones/{zone}/providers", json={"identifier": "https://p.example", "name": "P"})
    assert created.status_code == 201
    assert_error(api.patch(f"/zones/{zone}/providers/{created.json()['id']}", json=[1]), 400, "bad_request")


def test_binding_errors_never_quote_a_secret(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Leaky Lookup")
    manifest["entities"]["app"]["bindings"] = (
        '{"identifier": "https://leak.example", "name": {"a": "b"}[entities.inputs.token]}'
    )
    manifest["inputs"]["bindings"] = '{"app_name": pkg.inputs.app_name, "token": pkg.inputs.token}'
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"], {"app_name": "a", "token": "TOPSECRET-KEY"})
    assert task["status"] == "failed"
    assert "no such key" in task["error_message"]
    assert "TOPSECRET" not in task["error_message"]
    events = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events").json()
    assert "TOPSECRET" not in json.dumps(events)


def test_one_log_line_per_task_transition_and_no_secret(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    zone = api.new_zone()
    secret = "TOPSECRET-LOGGED"
    task = api.install(zone, CALENDAR, {"client_id": "cid", "client_secret": secret})
    assert task["status"] == "completed"
    replay_key = {"Idempotency-Key": "log-key"}
    first = start_delete(api, zone, task["install_id"], **replay_key)
    done = api.wait_task(zone, first.json()["id"])
    assert done["status"] == "completed"
    assert start_delete(api, zone, task["install_id"], **replay_key).json()["id"] == done["id"]

    def lines(task_id: str) -> list[str]:
        records = [r for r in caplog.records if getattr(r, "task_id", None) == task_id]
        return [r.getMessage() for r in records if r.getMessage().startswith("task ")]

    assert lines(task["id"]) == ["task pending", "task running", "task finished"]
    # The replayed DELETE created nothing and logged nothing.
    assert lines(done["id"]) == ["task pending", "task running", "task finished"]
    formatter = JsonFormatter()
    assert not any(secret in formatter.format(record) for record in caplog.records)


def test_a_delete_that_loses_the_race_returns_the_winners_task(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    pause_worker(api)
    first = start_delete(api, zone, task["install_id"])
    assert first.status_code == 202
    # The second DELETE read the install before the first committed (PostgreSQL, READ COMMITTED).
    real_get, real_unfinished = install_store.get_install_later, task_store.unfinished_task_of_later
    calls = {"get": 0, "unfinished": 0}

    def stale_get(conn: sa.Connection, zone_id: str, install_id: str) -> Answer[Any]:
        calls["get"] += 1
        return real_get(conn, zone_id, install_id).then(
            lambda row: {**row, "status": "active"} if calls["get"] == 1 and row else row
        )

    def stale_unfinished(conn: sa.Connection, install_id: str) -> Answer[Any]:
        calls["unfinished"] += 1
        return Answer.known(None) if calls["unfinished"] == 1 else real_unfinished(conn, install_id)

    monkeypatch.setattr(install_store, "get_install_later", stale_get)
    monkeypatch.setattr(task_store, "unfinished_task_of_later", stale_unfinished)
    second = start_delete(api, zone, task["install_id"])
    monkeypatch.undo()
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first.json()["id"]
    run_due_tasks(api)


def test_an_idempotency_key_race_answers_with_the_first_task(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = api.new_zone()
    key = {"Idempotency-Key": "race-key"}
    first = start_install(api, zone, CALENDAR, CREDS, **key)
    assert first.status_code == 202
    # The second request passed the replay check before the first committed; its key insert then fails.
    real_find = install_store.find_idempotency
    calls = {"find": 0}

    def blind_find(*args: Any) -> Any:
        calls["find"] += 1
        return None if calls["find"] == 1 else real_find(*args)

    def conflicting_remember(conn: sa.Connection, row: dict[str, Any]) -> None:
        raise sa.exc.IntegrityError("INSERT INTO idempotency_keys", {}, Exception("duplicate key"))

    monkeypatch.setattr(install_store, "find_idempotency", blind_find)
    monkeypatch.setattr(install_store, "remember_idempotency", conflicting_remember)
    second = start_install(api, zone, CALENDAR, CREDS, **key)
    monkeypatch.undo()
    assert second.status_code == 202, second.text
    assert second.json()["id"] == first.json()["id"]
    assert len(api.get(f"/zones/{zone}/installs").json()["items"]) == 1
