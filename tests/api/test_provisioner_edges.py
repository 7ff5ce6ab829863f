"""Provisioning edge cases: one install naming the same entity twice, journal events around every step."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.api.helpers import create_package, delete_and_wait


def twin_manifest(name: str) -> dict[str, Any]:
    """Two local names whose bindings produce the same natural key."""
    secret = '{"identifier": "twin-secret", "name": "Twin"}'
    return {
        "kind": "custom",
        "name": name,
        "entities": {"first": {"type": "secret", "bindings": secret}, "second": {"type": "secret", "bindings": secret}},
    }


def test_one_install_using_an_entity_under_two_names_creates_it_once_and_deletes_it_once(api: Api) -> None:
    zone = api.new_zone()
    package = create_package(api, zone, twin_manifest("Twins"))
    task = api.install(zone, package["id"])
    assert task["status"] == "completed", task.get("error_message")
    assert sorted(link["rel"] for link in task["links"]) == ["created", "shared"]
    entities = api.get(f"/zones/{zone}/entities").json()["items"]
    assert [e["identifier"] for e in entities] == ["twin-secret"]
    accepted, delete_task = delete_and_wait(api, zone, task["install_id"])
    assert accepted["warnings"] == []
    assert delete_task["status"] == "completed", delete_task.get("error_message")
    assert api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["status"] == "deleted"
    assert api.get(f"/zones/{zone}/entities").json()["items"] == []


def test_every_step_is_announced_before_its_outcome(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, "google-calendar-api", {"client_id": "c", "client_secret": "s"})
    events = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events").json()["items"]
    steps = [(e["kind"], e["local_name"], e["entity_type"]) for e in events if e["kind"].startswith("step_")]
    assert steps == [
        ("step_started", "google", "provider"),
        ("step_done", "google", "provider"),
        ("step_started", "calendar", "resource"),
        ("step_done", "calendar", "resource"),
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    _, delete_task = delete_and_wait(api, zone, task["install_id"])
    events = api.get(f"/zones/{zone}/catalog_tasks/{delete_task['id']}/events").json()["items"]
    steps = [
        (e["kind"], e["local_name"], e["entity_type"], e["action"]) for e in events if e["kind"].startswith("step_")
    ]
    assert steps == [
        ("step_started", "calendar", "resource", None),
        ("step_done", "calendar", "resource", "deleted"),
        ("step_started", "google", "provider", None),
        ("step_done", "google", "provider", "deleted"),
    ]
