"""Provisioning semantics through the API (design §6): create order, adoption, sharing, rollback, delete."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    DRIVE,
    GOOGLE_ISSUER,
    assert_error,
    create_package,
    delete_and_wait,
    pause_worker,
    provider_resource_manifest,
    start_install,
)
from zonecat.worker.worker import Worker


def _entities(api: Api, zone: str, query: str = "") -> list[dict[str, Any]]:
    response = api.get(f"/zones/{zone}/entities{query}")
    assert response.status_code == 200
    return list(response.json()["items"])


def _links(task: dict[str, Any]) -> dict[str, str]:
    return {link["properties"]["local_name"]: link["rel"] for link in task["links"]}


def _secret_of_ours(api: Api, zone: str, identifier: str) -> str:
    """An unmanaged secret named "Ours", made through the typed collection for an install to adopt; its id."""
    ours = api.post(
        f"/zones/{zone}/secrets", json={"identifier": identifier, "name": "Ours", "data": {"type": "token"}}
    )
    assert ours.status_code == 201, ours.text
    return str(ours.json()["id"])


def test_adopts_a_pre_created_unmanaged_provider(api: Api) -> None:
    zone = api.new_zone()
    created = api.post(
        f"/zones/{zone}/providers",
        json={"identifier": GOOGLE_ISSUER, "name": "Our Google", "client_id": "ours", "client_secret": "kept"},
    )
    assert created.status_code == 201
    provider = created.json()

    task = api.install(zone, CALENDAR, CREDS)
    assert task["status"] == "completed"
    assert _links(task) == {"google": "adopted", "calendar": "created"}
    adopted_link = next(link for link in task["links"] if link["rel"] == "adopted")
    assert adopted_link["href"] == f"/zones/{zone}/providers/{provider['id']}"
    assert adopted_link["titles"] == {"en": "google"}
    assert adopted_link["properties"] == {"local_name": "google", "type": "provider"}
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    assert install["outputs"]["provider_id"] == provider["id"]
    # The adopted provider was left untouched.
    assert api.get(f"/zones/{zone}/providers/{provider['id']}").json() == provider
    generic = api.get(f"/zones/{zone}/entities/{provider['id']}").json()
    assert generic["managed"] is False
    assert generic["created_by_install_id"] is None
    assert generic["adopted_by"] == [task["install_id"]]
    assert generic["used_by"] == [task["install_id"]]
    # Only one provider with that issuer exists.
    assert len(_entities(api, zone, f"?type=provider&identifier={GOOGLE_ISSUER}")) == 1
    # While adopted, deleting it is refused.
    assert_error(api.delete(f"/zones/{zone}/providers/{provider['id']}"), 409, "conflict")

    accepted, finished = delete_and_wait(api, zone, task["install_id"])
    assert len(accepted["warnings"]) == 1
    warning = accepted["warnings"][0]
    assert set(warning) == {"code", "message", "status", "path", "request_id", "timestamp", "details"}
    assert warning["code"] == "conflict"
    assert warning["status"] == 409
    assert warning["path"] == f"/zones/{zone}/installs/{task['install_id']}"
    assert "was not created by the catalog and will be preserved" in warning["message"]
    assert warning["details"] == [{"code": "conflict", "field": "entities.google", "message": warning["message"]}]
    assert finished["status"] == "completed"
    assert finished["warnings"] == accepted["warnings"]
    assert _links(finished) == {"google": "preserved", "calendar": "deleted"}
    # The provider survives, unchanged and no longer used.
    assert api.get(f"/zones/{zone}/providers/{provider['id']}").json() == provider
    remaining = _entities(api, zone)
    assert [e["id"] for e in remaining] == [provider["id"]]
    assert remaining[0]["used_by"] == [] and remaining[0]["adopted_by"] == []
    assert api.delete(f"/zones/{zone}/providers/{provider['id']}").status_code == 204


def test_warning_request_id_is_the_delete_request_id(api: Api) -> None:
    zone = api.new_zone()
    api.post(f"/zones/{zone}/providers", json={"identifier": GOOGLE_ISSUER, "name": "G"})
    task = api.install(zone, CALENDAR, CREDS)
    request_id = "0b9f4c4e-7a0a-4c67-9d0b-3f8f0c3a1e11"
    response = api.delete(
        f"/zones/{zone}/installs/{task['install_id']}", headers={**api.auth, "X-Client-Request-ID": request_id}
    )
    assert response.status_code == 202
    assert response.json()["warnings"][0]["request_id"] == request_id
    assert response.headers["x-request-id"] == request_id


def test_sharing_between_two_google_packages(api: Api) -> None:
    zone = api.new_zone()
    calendar = api.install(zone, CALENDAR, CREDS)
    drive = api.install(zone, DRIVE, CREDS)
    assert _links(calendar) == {"google": "created", "calendar": "created"}
    assert _links(drive) == {"google": "shared", "drive": "created"}
    cal_install = api.get(f"/zones/{zone}/installs/{calendar['install_id']}").json()
    drive_install = api.get(f"/zones/{zone}/installs/{drive['install_id']}").json()
    provider_id = cal_install["outputs"]["provider_id"]
    assert drive_install["outputs"]["provider_id"] == provider_id
    assert {link["rel"] for link in drive_install["links"] if link["properties"]["type"] == "provider"} == {"shared"}
    providers = _entities(api, zone, "?type=provider")
    assert len(providers) == 1
    assert providers[0]["managed"] is True
    assert providers[0]["created_by_install_id"] == calendar["install_id"]
    assert providers[0]["used_by"] == sorted([calendar["install_id"], drive["install_id"]])
    assert providers[0]["adopted_by"] == []
    assert [e["identifier"] for e in _entities(api, zone, f"?install_id={drive['install_id']}")] == [
        "https://www.googleapis.com/drive/v3",
        GOOGLE_ISSUER,
    ]

    accepted, finished = delete_and_wait(api, zone, calendar["install_id"])
    assert len(accepted["warnings"]) == 1
    message = accepted["warnings"][0]["message"]
    assert f"is still used by install {drive['install_id']}" in message
    assert accepted["warnings"][0]["details"][0]["field"] == "entities.google"
    assert _links(finished) == {"google": "preserved", "calendar": "deleted"}
    assert api.get(f"/zones/{zone}/providers/{provider_id}").status_code == 200
    assert [e["type"] for e in _entities(api, zone)] == ["resource", "provider"]
    assert _entities(api, zone, "?type=provider")[0]["used_by"] == [drive["install_id"]]

    accepted, finished = delete_and_wait(api, zone, drive["install_id"])
    assert accepted["warnings"] == []
    assert _links(finished) == {"google": "deleted", "drive": "deleted"}
    assert_error(api.get(f"/zones/{zone}/providers/{provider_id}"), 404, "not_found")
    assert _entities(api, zone) == []


def test_rollback_on_a_runtime_binding_error(api: Api) -> None:
    zone = api.new_zone()
    adopted = api.post(f"/zones/{zone}/providers", json={"identifier": "https://adopt.example", "name": "Mine"})
    assert adopted.status_code == 201
    manifest = provider_resource_manifest(
        "Half Built",
        "https://half.example",
        '{"identifier": entities.inputs.missing_key, "name": "R", "credential_provider_id": entities.prov.outputs.id}',
    )
    manifest["entities"]["mine"] = {
        "type": "provider",
        "bindings": '{"identifier": "https://adopt.example", "name": "X"}',
    }
    manifest["entities"]["res"]["links"].append({"rel": "depends-on", "href": "#mine"})
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"])
    assert task["status"] == "failed"
    assert "res" in task["error_message"]
    assert "missing_key" in task["error_message"]
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    assert install["status"] == "failed"
    assert install["links"] == []
    assert "outputs" not in install
    # Only the pre-existing provider remains, untouched and unused.
    remaining = _entities(api, zone)
    assert [e["id"] for e in remaining] == [adopted.json()["id"]]
    assert remaining[0]["used_by"] == []
    assert api.get(f"/zones/{zone}/providers/{adopted.json()['id']}").json() == adopted.json()
    # The events show each step, the failure and the rollback.
    events = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events").json()["items"]
    kinds = [(e["kind"], e["local_name"], e["action"]) for e in events if e["kind"] != "status"]
    assert ("step_done", "prov", "created") in kinds
    assert ("step_done", "mine", "adopted") in kinds
    assert ("step_failed", "res", None) in kinds
    failed_at = kinds.index(("step_failed", "res", None))
    assert ("step_done", "prov", "rolled_back") in kinds[failed_at:]
    assert [e["status"] for e in events if e["kind"] == "status"] == ["pending", "running", "failed"]


def test_rollback_on_an_attribute_that_fails_the_type_schema(api: Api) -> None:
    zone = api.new_zone()
    manifest = provider_resource_manifest(
        "Bad Name Resource",
        "https://noname.example",
        '{"identifier": "https://noname.example/api", "name": size("abc"),'
        ' "credential_provider_id": entities.prov.outputs.id}',
    )
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"])
    assert task["status"] == "failed"
    assert "'res'" in task["error_message"]
    assert "entities.res.name" in task["error_message"]
    assert api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["status"] == "failed"
    assert _entities(api, zone) == []
    assert api.get(f"/zones/{zone}/providers").json()["items"] == []


def test_steps_after_an_adopted_entity_are_bound_to_the_entity_adopted(api: Api) -> None:
    """The worker evaluates a batch's bindings before its transaction, as if every step creates its entity. A step
    that adopts one instead voids what the later steps and the outputs were evaluated from: they must name the
    adopted entity, never the one planned."""
    zone = api.new_zone()
    first_id = _secret_of_ours(api, zone, "first")
    manifest = {
        "kind": "custom",
        "name": "chain after adoption",
        "entities": {
            "first": {"type": "secret", "bindings": '{"identifier": "first", "name": "Planned"}'},
            "second": {
                "type": "secret",
                "bindings": '{"identifier": "second", "name": "after " + entities.first.outputs.name,'
                ' "metadata": {"docs_url": entities.first.outputs.id}}',
            },
        },
        "outputs": {
            "schema": {"type": "object", "properties": {"first": {"type": "string"}}},
            "bindings": '{"first": entities.first.outputs.id}',
        },
    }
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"])
    assert task["status"] == "completed", task
    assert _links(task) == {"first": "adopted", "second": "created"}
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    assert install["outputs"] == {"first": first_id}
    secrets = _entities(api, zone, "?type=secret")
    assert sorted(e["identifier"] for e in secrets) == ["first", "second"]  # nothing planned is left behind
    second = next(e for e in secrets if e["identifier"] == "second")
    assert second["attributes"]["name"] == "after Ours"
    assert second["attributes"]["metadata"] == {"docs_url": first_id}


def test_a_step_in_the_middle_of_a_batch_that_adopts_leaves_the_batch_as_if_run_step_by_step(api: Api) -> None:
    """On PostgreSQL a batch's inserts are sent together with its end, each as if it created its entity. When one in
    the middle adopts instead, all of it is rolled back and written again step by step, the steps after the adopted
    one evaluated from it: the install ends with one entity per local name, each step's events in order, and nothing
    the voided plans made."""
    zone = api.new_zone()
    middle_id = _secret_of_ours(api, zone, "middle")
    manifest = {
        "kind": "custom",
        "name": "adoption mid-batch",
        "entities": {
            "a": {"type": "secret", "bindings": '{"identifier": "a", "name": "A"}'},
            "b": {"type": "secret", "bindings": '{"identifier": "middle", "name": "Planned"}'},
            "c": {"type": "secret", "bindings": '{"identifier": "c", "name": "C"}'},
            "d": {
                "type": "secret",
                "bindings": '{"identifier": "d", "name": "after " + entities.b.outputs.name,'
                ' "metadata": {"docs_url": entities.b.outputs.id}}',
            },
        },
    }
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"])
    assert task["status"] == "completed", task
    assert _links(task) == {"a": "created", "b": "adopted", "c": "created", "d": "created"}
    secrets = {e["identifier"]: e for e in _entities(api, zone, "?type=secret")}
    assert sorted(secrets) == ["a", "c", "d", "middle"]
    assert secrets["middle"]["id"] == middle_id
    assert secrets["d"]["attributes"]["metadata"] == {"docs_url": middle_id}
    events = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events").json()["items"]
    steps = [(e["kind"], e["local_name"]) for e in events if e["kind"] in ("step_started", "step_done")]
    assert steps == [(kind, name) for name in "abcd" for kind in ("step_started", "step_done")]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_outputs_name_the_entity_the_last_step_adopted(api: Api) -> None:
    """The outputs are evaluated with the plan, as if every step creates its entity: when the last step adopts
    one instead, they must be evaluated again and name the adopted entity (a review found them naming the planned
    entity, never created, on PostgreSQL)."""
    zone = api.new_zone()
    last_id = _secret_of_ours(api, zone, "last")
    manifest = {
        "kind": "custom",
        "name": "last adopted",
        "entities": {
            "a": {"type": "secret", "bindings": '{"identifier": "a", "name": "A"}'},
            "z": {"type": "secret", "bindings": '{"identifier": "last", "name": "after " + entities.a.outputs.name}'},
        },
        "outputs": {
            "schema": {"type": "object", "properties": {"last": {"type": "string"}, "name": {"type": "string"}}},
            "bindings": '{"last": entities.z.outputs.id, "name": entities.z.outputs.name}',
        },
    }
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"])
    assert task["status"] == "completed", task
    assert _links(task) == {"a": "created", "z": "adopted"}
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    assert install["outputs"] == {"last": last_id, "name": "Ours"}


@pytest.mark.parametrize("position", ["middle", "last"])
def test_concurrent_installs_sharing_one_entity_end_with_one_entity_and_right_outputs(api: Api, position: str) -> None:
    """16 installs by 3 workers, each creating its own entities and sharing one ("common", in the middle of its
    steps or last): one "common" entity, every install completed with outputs naming it, events numbered 1..n."""
    run = '"-" + entities.inputs.run'
    own = {
        name: {"type": "secret", "bindings": f'{{"identifier": "{name}" + {run}, "name": "{name}"}}'} for name in "ab"
    }
    common = {"type": "secret", "bindings": '{"identifier": "common", "name": "common"}'}
    after = {
        "type": "secret",
        "bindings": f'{{"identifier": "after" + {run}, "name": "x",'
        ' "metadata": {"docs_url": entities.common.outputs.id}}',
    }
    steps = {"a": own["a"], "common": common, "after": after} if position == "middle" else {**own, "common": common}
    manifest = {
        "kind": "custom",
        "name": f"shared {position}",
        "inputs": {"schema": {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}},
        "entities": steps,
        "outputs": {
            "schema": {"type": "object", "properties": {"common": {"type": "string"}}},
            "bindings": '{"common": entities.common.outputs.id}',
        },
    }
    zone = api.new_zone()
    package = create_package(api, zone, manifest)
    pause_worker(api)
    count = 16
    started = [start_install(api, zone, package["id"], {"run": str(i)}).json() for i in range(count)]
    workers = [Worker(api.db, api.worker.settings, name=f"racer-{i}") for i in range(3)]
    threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    try:
        finals = [api.wait_task(zone, task["id"], timeout=60) for task in started]
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(10)
    found = api.get(f"/zones/{zone}/entities?limit=100").json()["items"]
    commons = [entity["id"] for entity in found if entity["identifier"] == "common"]
    assert len(commons) == 1
    assert len(found) == 1 + 2 * count
    for task in finals:
        assert task["status"] == "completed", task
        install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
        assert install["outputs"] == {"common": commons[0]}
        events = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events?limit=100").json()["items"]
        assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
