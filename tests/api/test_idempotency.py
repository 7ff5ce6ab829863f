"""Idempotent install and uninstall requests (design §3.4)."""

from __future__ import annotations

import uuid

import pytest

from tests.api.conftest import Api
from tests.api.helpers import CALENDAR, CREDS, LINEAR, assert_error, start_delete, start_install


@pytest.mark.parametrize("header", ["X-Client-Request-ID", "Idempotency-Key"])
def test_same_key_same_body_returns_the_first_task(api: Api, header: str) -> None:
    zone = api.new_zone()
    key = str(uuid.uuid4())
    first = start_install(api, zone, CALENDAR, CREDS, **{header: key})
    assert first.status_code == 202
    api.wait_task(zone, first.json()["id"])
    second = start_install(api, zone, CALENDAR, CREDS, **{header: key})
    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["install_id"] == first.json()["install_id"]
    assert second.json()["status"] == "completed"  # its current state
    assert second.headers["location"] == first.headers["location"]
    assert len(api.get(f"/zones/{zone}/installs").json()["items"]) == 1
    assert len(api.get(f"/zones/{zone}/catalog_tasks").json()["items"]) == 1


def test_same_key_different_body_is_409(api: Api) -> None:
    zone = api.new_zone()
    key = "retry-key-1"
    assert start_install(api, zone, CALENDAR, CREDS, **{"Idempotency-Key": key}).status_code == 202
    body = assert_error(start_install(api, zone, LINEAR, CREDS, **{"Idempotency-Key": key}), 409, "conflict")
    assert body["details"][0]["field"] == "Idempotency-Key"
    changed_inputs = {**CREDS, "client_id": "other"}
    assert_error(start_install(api, zone, CALENDAR, changed_inputs, **{"Idempotency-Key": key}), 409, "conflict")
    assert len(api.get(f"/zones/{zone}/installs").json()["items"]) == 1


def test_key_order_of_the_body_does_not_matter(api: Api) -> None:
    zone = api.new_zone()
    key = str(uuid.uuid4())
    headers = {**api.auth, "X-Client-Request-ID": key, "Content-Type": "application/json"}
    one = api.client.post(
        f"/zones/{zone}/installs",
        headers=headers,
        content=b'{"package_id": "google-calendar-api", "inputs": {"client_id": "a", "client_secret": "b"}}',
    )
    two = api.client.post(
        f"/zones/{zone}/installs",
        headers=headers,
        content=b'{"inputs": {"client_secret": "b", "client_id": "a"}, "package_id": "google-calendar-api"}',
    )
    assert one.status_code == two.status_code == 202
    assert one.json()["id"] == two.json()["id"]


def test_without_a_key_a_retry_creates_a_second_install(api: Api) -> None:
    zone = api.new_zone()
    first = start_install(api, zone, CALENDAR, CREDS).json()
    api.wait_task(zone, first["id"])
    second = start_install(api, zone, CALENDAR, CREDS).json()
    assert second["id"] != first["id"]
    assert second["install_id"] != first["install_id"]
    api.wait_task(zone, second["id"])


def test_keys_are_scoped_to_method_and_path(api: Api) -> None:
    zone = api.new_zone()
    other = api.new_zone()
    key = str(uuid.uuid4())
    first = start_install(api, zone, CALENDAR, CREDS, **{"X-Client-Request-ID": key}).json()
    # The same key on another zone's path is a different request.
    elsewhere = start_install(api, other, CALENDAR, CREDS, **{"X-Client-Request-ID": key})
    assert elsewhere.status_code == 202
    assert elsewhere.json()["id"] != first["id"]
    api.wait_task(zone, first["id"])
    # ... and on DELETE too.
    deleted = start_delete(api, zone, first["install_id"], **{"X-Client-Request-ID": key})
    assert deleted.status_code == 202
    assert deleted.json()["operation"] == "delete"


def test_delete_with_the_same_key_returns_the_same_task(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    key = str(uuid.uuid4())
    first = start_delete(api, zone, task["install_id"], **{"Idempotency-Key": key})
    assert first.status_code == 202
    api.wait_task(zone, first.json()["id"])
    second = start_delete(api, zone, task["install_id"], **{"Idempotency-Key": key})
    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["status"] == "completed"
    assert len(api.get(f"/zones/{zone}/catalog_tasks?operation=delete").json()["items"]) == 1


def test_a_failed_request_does_not_burn_the_key(api: Api) -> None:
    zone = api.new_zone()
    key = str(uuid.uuid4())
    assert_error(start_install(api, zone, CALENDAR, {}, **{"Idempotency-Key": key}), 400, "validation_error")
    response = start_install(api, zone, CALENDAR, CREDS, **{"Idempotency-Key": key})
    assert response.status_code == 202
    api.wait_task(zone, response.json()["id"])
