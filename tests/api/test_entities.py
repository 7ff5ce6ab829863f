"""The generic entity list and the five typed entity collections (design §3.2, §5)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.api.conftest import Api
from tests.api.helpers import CALENDAR, CREDS, GOOGLE_ISSUER, assert_error, fields
from zonecat.store import entities as entity_store
from zonecat.store.database import Database
from zonecat.store.schema import entities
from zonecat.store.secrets import SecretBox, generate_key

COMMON = {"id", "organization_id", "zone_id", "slug", "owner_type", "created_at", "updated_at"}


def _bodies(zone_app_id: str) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """collection → (create body, patch body)."""
    return {
        "providers": (
            {"identifier": "https://idp.example", "name": "IdP", "client_id": "c", "client_secret": "SECRET-P"},
            {"description": "the IdP"},
        ),
        "resources": (
            {"identifier": "https://api.example", "name": "API", "scopes": ["read"]},
            {"scopes": ["read", "write"]},
        ),
        "applications": (
            {"identifier": "https://app2.example", "name": "App", "protocols": {"oauth2": {"redirect_uris": ["x"]}}},
            {"name": "App Renamed"},
        ),
        "application-credentials": (
            {"identifier": "cred-1", "type": "password", "application_id": zone_app_id},
            {"metadata": {"docs_url": "https://docs.example"}},
        ),
        "secrets": (
            {"identifier": "sec-1", "name": "Secret", "data": {"type": "token", "token": "SECRET-S"}},
            {"name": "Secret 2"},
        ),
    }


@pytest.mark.parametrize("collection", ["providers", "resources", "applications", "application-credentials", "secrets"])
def test_typed_collection_crud(api: Api, collection: str) -> None:
    zone = api.new_zone()
    app = api.post(f"/zones/{zone}/applications", json={"identifier": "https://app.example", "name": "Base"}).json()
    create_body, patch_body = _bodies(app["id"])[collection]
    base = f"/zones/{zone}/{collection}"

    created = api.post(base, json=create_body)
    assert created.status_code == 201, created.text
    entity = created.json()
    assert COMMON <= set(entity)
    assert entity["zone_id"] == zone
    assert entity["organization_id"] == "default"
    assert entity["owner_type"] == "customer"
    assert entity["identifier"] == create_body["identifier"]
    assert "SECRET" not in created.text
    for key, value in create_body.items():
        if key in ("client_secret", "data"):
            assert key not in entity
            assert entity[f"{key}_set"] is True
        else:
            assert entity[key] == value

    fetched = api.get(f"{base}/{entity['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == entity

    listed = api.get(base)
    assert listed.status_code == 200
    body = listed.json()
    assert set(body) == {"items", "page_info", "pagination"}
    ids = [item["id"] for item in body["items"]]
    assert entity["id"] in ids
    assert set(body["pagination"]) == {"after_cursor", "before_cursor"}
    assert "SECRET" not in listed.text

    patched = api.patch(f"{base}/{entity['id']}", json=patch_body)
    assert patched.status_code == 200, patched.text
    for key, value in patch_body.items():
        assert patched.json()[key] == value
    assert patched.json()["identifier"] == create_body["identifier"]
    assert api.get(f"{base}/{entity['id']}").json() == patched.json()
    assert "SECRET" not in patched.text
    # Write-only values survive a patch that does not mention them.
    for key in ("client_secret", "data"):
        if key in create_body:
            assert patched.json()[f"{key}_set"] is True

    # Duplicate identifier: 409.
    err = assert_error(api.post(base, json=create_body), 409, "conflict", base)
    assert fields(err) == ["identifier"]

    # Invalid bodies: 400 validation_error with the field.
    assert "identifier" in fields(assert_error(api.post(base, json={"name": "x"}), 400, "validation_error"))
    assert_error(api.post(base, json={**create_body, "identifier": "other", "bogus": 1}), 400, "validation_error")
    assert_error(api.patch(f"{base}/{entity['id']}", json={"identifier": 7}), 400, "validation_error")

    # Wrong type under this collection or unknown id: 404.
    if collection != "applications":
        assert_error(api.get(f"{base}/{app['id']}"), 404, "not_found")
    assert_error(api.get(f"{base}/ent_nope"), 404, "not_found", f"{base}/ent_nope")
    assert_error(api.patch(f"{base}/ent_nope", json=patch_body), 404, "not_found")

    deleted = api.delete(f"{base}/{entity['id']}")
    assert deleted.status_code == 204
    assert_error(api.get(f"{base}/{entity['id']}"), 404, "not_found")
    assert_error(api.delete(f"{base}/{entity['id']}"), 404, "not_found")


def test_client_secret_is_write_only(api: Api) -> None:
    zone = api.new_zone()
    base = f"/zones/{zone}/providers"
    no_secret = api.post(base, json={"identifier": "https://a.example", "name": "A"}).json()
    assert "client_secret_set" not in no_secret
    assert "client_secret" not in no_secret
    response = api.patch(f"{base}/{no_secret['id']}", json={"client_secret": "NEW-SECRET"})
    assert response.status_code == 200
    assert response.json()["client_secret_set"] is True
    assert "NEW-SECRET" not in response.text
    assert "NEW-SECRET" not in api.get(f"/zones/{zone}/entities/{no_secret['id']}").text


def _seal_with_another_key(api: Api, entity_id: str, secret_attributes: dict[str, Any]) -> None:
    """What a server started with the wrong ``ZONECAT_SECRET_KEY`` finds: a value sealed with a key it lacks."""
    other = Database(
        api.db.engine.url.render_as_string(hide_password=False), secret_box=SecretBox.from_text(generate_key())
    )
    try:
        with other.write() as conn:
            entity_store.update_entity(conn, entity_id, {"secret_attributes": secret_attributes})
    finally:
        other.dispose()


def test_an_entity_whose_secret_cannot_be_opened_is_still_read_listed_replaced_and_deleted(api: Api) -> None:
    zone = api.new_zone()
    base = f"/zones/{zone}/providers"
    provider = api.post(base, json={"identifier": "https://a.example", "name": "A", "client_secret": "OLD"}).json()
    _seal_with_another_key(api, provider["id"], {"client_secret": "SEALED-ELSEWHERE"})
    path = f"{base}/{provider['id']}"
    # Reads never open a write-only value: they say it is set from the names stored beside it.
    assert api.get(path).json()["client_secret_set"] is True
    assert api.get(f"/zones/{zone}/entities/{provider['id']}").json()["attributes"]["client_secret_set"] is True
    assert [item["id"] for item in api.get(base).json()["items"]] == [provider["id"]]
    # A PATCH that would keep it cannot: 409, naming the field, so the client can send a new one.
    assert_error(api.patch(path, json={"name": ""}), 400, "validation_error", path)  # invalid anyway: said first
    body = assert_error(api.patch(path, json={"name": "B"}), 409, "conflict", path)
    assert "client_secret" in body["message"] and [d["field"] for d in body["details"]] == ["client_secret"]
    assert api.get(path).json()["name"] == "A"
    replaced = api.patch(path, json={"name": "B", "client_secret": "NEW"})
    assert replaced.status_code == 200, replaced.text
    with api.db.read() as conn:
        stored = entity_store.get_entity(conn, zone, provider["id"])
    assert stored is not None
    assert entity_store.unseal_secret_attributes(api.db.engine.dialect, stored["secret_attributes"]) == {
        "client_secret": "NEW"
    }
    _seal_with_another_key(api, provider["id"], {"client_secret": "SEALED-ELSEWHERE"})
    assert api.delete(path).status_code == 204
    assert_error(api.get(path), 404, "not_found")


def test_a_patch_keeps_the_stored_secret_whatever_the_names_beside_it_say(api: Api) -> None:
    # The names stored in clear beside the sealed value only tell reads what is set; what a PATCH keeps is
    # decided from the opened value, so a wrong name list (edited in the database) loses nothing.
    zone = api.new_zone()
    base = f"/zones/{zone}/providers"
    provider = api.post(base, json={"identifier": "https://a.example", "name": "A", "client_secret": "KEEP"}).json()
    with api.db.write() as conn:
        stored = entity_store.get_entity(conn, zone, provider["id"])
        assert stored is not None
        conn.execute(
            entities.update()
            .where(entities.c.id == provider["id"])
            .values(secret_attributes=sa.type_coerce({**stored["secret_attributes"], "set": []}, sa.JSON))
        )
    assert "client_secret_set" not in api.get(f"{base}/{provider['id']}").json()
    assert api.patch(f"{base}/{provider['id']}", json={"name": "B"}).status_code == 200
    with api.db.read() as conn:
        kept = entity_store.get_entity(conn, zone, provider["id"])
    assert kept is not None
    assert entity_store.unseal_secret_attributes(api.db.engine.dialect, kept["secret_attributes"]) == {
        "client_secret": "KEEP"
    }


def test_an_install_whose_entity_secret_cannot_be_opened_still_uninstalls(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    assert task["status"] == "completed", task
    outputs = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["outputs"]
    _seal_with_another_key(api, outputs["provider_id"], {"client_secret": "SEALED-ELSEWHERE"})
    # The install's own reads list its entities (the provider among them) without opening anything.
    install_path = f"/zones/{zone}/installs/{task['install_id']}"
    assert outputs["provider_id"] in api.get(install_path).text
    graph = api.get(f"{install_path}/graph")
    assert graph.status_code == 200 and outputs["provider_id"] in graph.text
    deleted = api.delete(f"/zones/{zone}/installs/{task['install_id']}")
    assert deleted.status_code == 202, deleted.text
    finished = api.wait_task(zone, deleted.json()["id"])
    assert finished["status"] == "completed", finished
    assert_error(api.get(f"/zones/{zone}/providers/{outputs['provider_id']}"), 404, "not_found")


def test_generic_entities_with_provenance(api: Api) -> None:
    zone = api.new_zone()
    own = api.post(f"/zones/{zone}/secrets", json={"identifier": "s", "name": "S", "data": {"type": "token"}}).json()
    task = api.install(zone, CALENDAR, CREDS)
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()

    response = api.get(f"/zones/{zone}/entities")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [item["type"] for item in items] == ["resource", "provider", "secret"]  # newest first
    keys = {
        "id",
        "type",
        "identifier",
        "zone_id",
        "organization_id",
        "href",
        "managed",
        "created_by_install_id",
        "adopted_by",
        "used_by",
        "attributes",
        "created_at",
        "updated_at",
    }
    assert all(set(item) == keys for item in items)
    provider = items[1]
    assert provider["id"] == install["outputs"]["provider_id"]
    assert provider["identifier"] == GOOGLE_ISSUER
    assert provider["managed"] is True
    assert provider["created_by_install_id"] == task["install_id"]
    assert provider["adopted_by"] == []
    assert provider["used_by"] == [task["install_id"]]
    assert provider["href"] == f"/zones/{zone}/providers/{provider['id']}"
    assert provider["attributes"]["client_secret_set"] is True
    assert "client_secret" not in provider["attributes"]
    secret = items[2]
    assert secret["id"] == own["id"]
    assert secret["managed"] is False
    assert secret["created_by_install_id"] is None
    assert secret["used_by"] == []

    single = api.get(f"/zones/{zone}/entities/{provider['id']}")
    assert single.status_code == 200
    assert single.json() == provider

    def ids(query: str) -> list[str]:
        result = api.get(f"/zones/{zone}/entities{query}")
        assert result.status_code == 200, result.text
        return [item["id"] for item in result.json()["items"]]

    assert ids("?type=secret") == [own["id"]]
    assert ids("?type=application") == []
    assert ids(f"?install_id={task['install_id']}") == [items[0]["id"], provider["id"]]
    assert ids(f"?identifier={GOOGLE_ISSUER}") == [provider["id"]]
    assert ids("?type=provider&identifier=https://other") == []
    assert api.get(f"/zones/{zone}/entities?expand[]=total_count").json()["pagination"]["total_count"] == 3
    assert_error(api.get(f"/zones/{zone}/entities?type=spaceship"), 400, "bad_request")
    assert_error(api.get(f"/zones/{zone}/entities/ent_nope"), 404, "not_found")
    # Entities of one zone are invisible from another.
    other = api.new_zone()
    assert_error(api.get(f"/zones/{other}/entities/{provider['id']}"), 404, "not_found")
    assert_error(api.get(f"/zones/{other}/providers/{provider['id']}"), 404, "not_found")
    assert api.get(f"/zones/{other}/entities").json()["items"] == []


def test_entities_an_active_install_uses_cannot_be_deleted_or_changed(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    outputs = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["outputs"]
    for path in (
        f"/zones/{zone}/providers/{outputs['provider_id']}",
        f"/zones/{zone}/resources/{outputs['resource_id']}",
    ):
        body = assert_error(api.delete(path), 409, "conflict", path)
        assert task["install_id"] in body["message"]
        assert_error(api.patch(path, json={"name": "changed"}), 409, "conflict", path)
        assert api.get(path).status_code == 200
    assert api.get(f"/zones/{zone}/providers/{outputs['provider_id']}").json()["name"] == "Google"


def test_patch_to_a_taken_identifier_is_409(api: Api) -> None:
    zone = api.new_zone()
    base = f"/zones/{zone}/resources"
    api.post(base, json={"identifier": "https://one", "name": "one"})
    two = api.post(base, json={"identifier": "https://two", "name": "two"}).json()
    assert_error(api.patch(f"{base}/{two['id']}", json={"identifier": "https://one"}), 409, "conflict")
    # The same identifier under another type is fine.
    assert api.post(f"/zones/{zone}/applications", json={"identifier": "https://one", "name": "one"}).status_code == 201
