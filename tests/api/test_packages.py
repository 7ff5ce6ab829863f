"""Packages, drafts, versions: the Keycard-compatible reads and zonecat's authoring endpoints (design §3.1, §3.2)."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from tests.api.conftest import Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    DRIVE,
    LINEAR,
    assert_error,
    create_package,
    delete_and_wait,
    fields,
    simple_manifest,
)

GLOBAL_SLUGS = {"google-calendar-api", "google-drive-api", "linear-api", "github-api", "notion-api", "slack-api"}


def _sha(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_list_shows_global_and_zone_packages_newest_first(api: Api) -> None:
    zone = api.new_zone()
    other = api.new_zone()
    own = create_package(api, zone, simple_manifest("My Tool"), release=False)
    create_package(api, other, simple_manifest("Other Zone Tool"), release=False)
    response = api.get(f"/zones/{zone}/packages")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "pagination"}
    assert set(body["pagination"]) == {"after_cursor", "before_cursor"}
    slugs = [item["slug"] for item in body["items"]]
    assert set(slugs) == GLOBAL_SLUGS | {"my-tool"}
    assert slugs[0] == "my-tool"  # newest first
    ids = [item["id"] for item in body["items"]]
    assert ids == sorted(ids, reverse=True)
    by_slug = {item["slug"]: item for item in body["items"]}
    assert by_slug["my-tool"]["id"] == own["id"]
    assert by_slug["my-tool"]["source"] == {"scope": "zone"}
    assert by_slug[CALENDAR]["source"] == {"scope": "global"}
    assert by_slug[CALENDAR]["current_version"]["owner_type"] == "platform"


def test_list_filters_and_total_count(api: Api) -> None:
    zone = api.new_zone()
    create_package(api, zone, simple_manifest("Custom Thing"), release=False)
    create_package(api, zone, simple_manifest("Server Thing", kind="mcp-server"), release=False)

    def slugs(query: str) -> list[str]:
        response = api.get(f"/zones/{zone}/packages?{query}")
        assert response.status_code == 200, response.text
        return sorted(item["slug"] for item in response.json()["items"])

    assert slugs("filters%5Bslug%5D=linear-api") == [LINEAR]
    assert slugs("filters[slug]=custom-thing") == ["custom-thing"]
    assert slugs("filters[slug]=nothing-here") == []
    assert slugs("kind=custom") == ["custom-thing"]
    assert slugs("kind=custom%2Cmcp-server") == ["custom-thing", "server-thing"]
    assert slugs("kind=custom,api-server") == sorted(GLOBAL_SLUGS | {"custom-thing"})
    assert slugs("kind=api-server&filters[slug]=google-drive-api") == [DRIVE]

    counted = api.get(f"/zones/{zone}/packages?expand%5B%5D=total_count&limit=2").json()
    assert counted["pagination"]["total_count"] == len(GLOBAL_SLUGS) + 2
    assert len(counted["items"]) == 2
    assert counted["pagination"]["after_cursor"] is not None
    assert counted["pagination"]["before_cursor"] is None
    filtered = api.get(f"/zones/{zone}/packages?kind=custom&expand[]=total_count").json()
    assert filtered["pagination"]["total_count"] == 1
    assert "total_count" not in api.get(f"/zones/{zone}/packages").json()["pagination"]
    assert_error(api.get(f"/zones/{zone}/packages?expand[]=everything"), 400, "bad_request")


def test_get_by_id_and_slug(api: Api) -> None:
    zone = api.new_zone()
    by_slug = api.get(f"/zones/{zone}/packages/{CALENDAR}")
    assert by_slug.status_code == 200
    package = by_slug.json()
    assert {"id", "created_at", "updated_at", "kind", "name", "slug"} <= set(package)
    assert package["kind"] == "api-server"
    assert package["name"] == "Google Calendar API"
    assert package["current_version"]["version"] == 1
    assert set(package["inputs"]) == {"schema", "bindings"}
    assert set(package["outputs"]) == {"schema", "bindings"}
    effective = package["input_state"]["effective_bindings"]
    assert effective["client_id"] == {"$input": "client_id"}
    assert effective["issuer"] == "https://accounts.google.com"
    assert {"client_id", "client_secret"} <= set(package["input_state"]["effective_schema"]["required"])
    by_id = api.get(f"/zones/{zone}/packages/{package['id']}")
    assert by_id.status_code == 200
    assert by_id.json() == package
    assert_error(api.get(f"/zones/{zone}/packages/nope"), 404, "not_found", f"/zones/{zone}/packages/nope")


def test_zone_package_is_invisible_in_other_zones(api: Api) -> None:
    zone = api.new_zone()
    other = api.new_zone()
    package = create_package(api, zone, simple_manifest("Private Tool"))
    assert_error(api.get(f"/zones/{other}/packages/{package['id']}"), 404, "not_found")
    assert_error(api.get(f"/zones/{other}/packages/private-tool"), 404, "not_found")
    response = api.post(f"/zones/{other}/installs", json={"package_id": package["id"], "inputs": {"app_name": "a"}})
    assert_error(response, 404, "not_found")
    # The same name is free in another zone.
    create_package(api, other, simple_manifest("Private Tool"), release=False)


def test_create_package_conflicts_and_validation(api: Api) -> None:
    zone = api.new_zone()
    create_package(api, zone, simple_manifest("Dup Name"), release=False)
    body = assert_error(
        api.post(f"/zones/{zone}/packages", json={"manifest": simple_manifest("Dup Name")}), 409, "conflict"
    )
    assert "dup-name" in body["message"]
    # A zone package may not take a global package's slug.
    assert_error(
        api.post(f"/zones/{zone}/packages", json={"manifest": simple_manifest("Google Calendar API")}),
        409,
        "conflict",
    )
    body = assert_error(api.post(f"/zones/{zone}/packages", json={}), 400, "validation_error")
    assert fields(body) == ["manifest"]
    body = assert_error(
        api.post(f"/zones/{zone}/packages", json={"manifest": {"kind": "custom"}}), 400, "validation_error"
    )
    assert "manifest.name" in fields(body)


def test_created_package_shape(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Shape Check")
    package = create_package(api, zone, manifest, release=False)
    assert package["slug"] == "shape-check"
    assert package["name"] == "Shape Check"
    assert package["kind"] == "custom"
    assert package["current_version"] is None
    assert package["tags"] == ["test"]
    assert package["properties"] == {"urn:example:test": {"x": 1}}
    assert package["draft"]["manifest_sha"] == _sha(manifest)
    assert package["source"] == {"scope": "zone"}


def test_draft_get_put_if_match(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Drafty")
    package = create_package(api, zone, manifest, release=False)
    path = f"/zones/{zone}/packages/{package['id']}/draft"

    draft = api.get(path)
    assert draft.status_code == 200
    body = draft.json()
    assert {"id", "manifest_sha", "name", "updated_at"} <= set(body)
    assert body["manifest_sha"] == _sha(manifest)
    assert body["name"] == "Drafty"
    assert draft.headers["etag"] == f'"{body["manifest_sha"]}"'
    assert api.get(f"/zones/{zone}/packages/drafty/draft").json() == body

    changed = copy.deepcopy(manifest)
    changed["description"] = "second edition"
    put = api.put(path, json={"manifest": changed}, headers={**api.auth, "If-Match": body["manifest_sha"]})
    assert put.status_code == 200, put.text
    assert put.json()["manifest_sha"] == _sha(changed)
    assert put.json()["description"] == "second edition"
    assert put.json()["id"] == body["id"]

    # The old sha is now stale.
    again = copy.deepcopy(manifest)
    again["description"] = "lost update"
    stale = api.put(path, json={"manifest": again}, headers={**api.auth, "If-Match": f'"{body["manifest_sha"]}"'})
    err = assert_error(stale, 409, "conflict", path)
    assert err["details"][0]["field"] == "If-Match"
    assert api.get(path).json()["description"] == "second edition"

    # Without If-Match the put is unconditional; a quoted ETag works as If-Match.
    current = api.get(path).headers["etag"]
    ok = api.put(path, json={"manifest": again}, headers={**api.auth, "If-Match": current})
    assert ok.status_code == 200
    assert api.put(path, json={"manifest": manifest}).status_code == 200
    assert api.get(path).json()["manifest_sha"] == _sha(manifest)

    assert_error(api.put(path, json={"manifest": {"name": 5}}), 400, "validation_error")
    assert_error(api.put(path, json={}), 400, "validation_error")


def test_release_versions_list_get(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Versioned")
    package = create_package(api, zone, manifest, release=False)
    base = f"/zones/{zone}/packages/{package['id']}"

    released = api.post(f"{base}/versions", json={"manifest_sha": _sha(manifest)})
    assert released.status_code == 201, released.text
    v1 = released.json()
    assert {"id", "created_at", "manifest_sha", "name", "owner_type", "version"} <= set(v1)
    assert v1["version"] == 1
    assert v1["manifest_sha"] == _sha(manifest)
    assert v1["owner_type"] == "customer"
    assert v1["archived_at"] is None

    # Releasing an unchanged draft again is a conflict; a stale manifest_sha too.
    assert_error(api.post(f"{base}/versions"), 409, "conflict")
    changed = copy.deepcopy(manifest)
    changed["description"] = "v2"
    assert api.put(f"{base}/draft", json={"manifest": changed}).status_code == 200
    assert_error(api.post(f"{base}/versions", json={"manifest_sha": _sha(manifest)}), 409, "conflict")
    v2 = api.post(f"{base}/versions", json={"manifest_sha": _sha(changed)}).json()
    assert v2["version"] == 2
    assert v2["description"] == "v2"

    listed = api.get(f"{base}/versions")
    assert listed.status_code == 200
    assert [v["version"] for v in listed.json()["items"]] == [2, 1]
    assert api.get(f"{base}/versions?expand[]=total_count").json()["pagination"]["total_count"] == 2

    by_number = api.get(f"{base}/versions/1")
    by_id = api.get(f"{base}/versions/{v1['id']}")
    assert by_number.status_code == by_id.status_code == 200
    assert by_number.json() == by_id.json()
    assert by_number.json()["manifest_sha"] == v1["manifest_sha"]
    assert_error(api.get(f"{base}/versions/3"), 404, "not_found")
    assert_error(api.get(f"{base}/versions/ver_nope"), 404, "not_found")

    package_now = api.get(base).json()
    assert package_now["current_version"]["version"] == 2
    assert package_now["description"] == "v2"

    # Versions of global packages are readable the same way.
    global_versions = api.get(f"/zones/{zone}/packages/{CALENDAR}/versions").json()["items"]
    assert [v["version"] for v in global_versions] == [1]
    assert global_versions[0]["owner_type"] == "platform"


def test_release_reports_every_problem_at_once(api: Api) -> None:
    zone = api.new_zone()
    manifest = {
        "kind": "custom",
        "name": "Broken",
        "inputs": {
            "schema": {
                "type": "object",
                "properties": {"mode": {"oneOf": [{"type": "string"}, {"type": "integer"}]}},
            }
        },
        "entities": {
            "a": {
                "type": "resource",
                "bindings": '{"identifier": "a", "name": "a", "application_id": entities.b.outputs.id}',
            },
            "b": {"type": "application", "bindings": '{"identifier": "b", "name": "b", "x": entities.a.outputs.id}'},
            "weird": {"type": "spaceship", "bindings": '{"identifier": "w", "name": "w"}'},
        },
    }
    package = create_package(api, zone, manifest, release=False)
    path = f"/zones/{zone}/packages/{package['id']}/versions"
    body = assert_error(api.post(path), 400, "validation_error", path)
    found = fields(body)
    assert len(found) >= 3, body
    assert "manifest.inputs.schema.properties.mode.oneOf" in found
    assert "manifest.entities.weird.type" in found
    cycle = [d for d in body["details"] if "cycle" in d["message"].lower()]
    assert cycle, body
    assert all(field.startswith("manifest.") for field in found)
    assert all(d["code"] == "validation_error" for d in body["details"])
    # Nothing was released.
    assert api.get(f"/zones/{zone}/packages/{package['id']}/versions").json()["items"] == []


def test_archive_blocks_new_installs(api: Api) -> None:
    zone = api.new_zone()
    package = create_package(api, zone, simple_manifest("Archivable"))
    base = f"/zones/{zone}/packages/{package['id']}"
    archived = api.post(f"{base}/versions/1/archive")
    assert archived.status_code == 200
    assert archived.json()["version"] == 1
    assert archived.json()["archived_at"] is not None
    assert api.get(f"{base}/versions/1").json()["archived_at"] == archived.json()["archived_at"]

    body = {"package_id": package["id"], "inputs": {"app_name": "x"}, "version": 1}
    err = assert_error(api.post(f"/zones/{zone}/installs", json=body), 409, "conflict")
    assert fields(err) == ["version"]
    # Without a version: no installable version remains.
    del body["version"]
    assert_error(api.post(f"/zones/{zone}/installs", json=body), 409, "conflict")
    assert api.get(f"/zones/{zone}/installs").json()["items"] == []
    assert_error(api.post(f"{base}/versions/7/archive"), 404, "not_found")


def test_archiving_the_latest_version_falls_back_to_the_previous(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Two Versions")
    package = create_package(api, zone, manifest)
    base = f"/zones/{zone}/packages/{package['id']}"
    manifest["description"] = "second"
    assert api.put(f"{base}/draft", json={"manifest": manifest}).status_code == 200
    assert api.post(f"{base}/versions").json()["version"] == 2
    assert api.get(base).json()["current_version"]["version"] == 2
    assert api.post(f"{base}/versions/2/archive").status_code == 200
    assert api.get(base).json()["current_version"]["version"] == 1
    task = api.install(zone, package["id"], {"app_name": "x"})
    assert task["status"] == "completed"
    assert task["package_version"] == 1
    # Versions of one package are not reachable through another.
    other = create_package(api, zone, simple_manifest("Other Versions"))
    v1 = api.get(f"{base}/versions/1").json()
    assert_error(api.get(f"/zones/{zone}/packages/{other['id']}/versions/{v1['id']}"), 404, "not_found")


def test_delete_package_while_installed_is_409(api: Api) -> None:
    zone = api.new_zone()
    package = create_package(api, zone, simple_manifest("Removable"))
    task = api.install(zone, package["id"], {"app_name": "x"})
    assert task["status"] == "completed"
    path = f"/zones/{zone}/packages/{package['id']}"
    assert_error(api.delete(path), 409, "conflict", path)
    assert api.get(path).status_code == 200

    _, finished = delete_and_wait(api, zone, task["install_id"])
    assert finished["status"] == "completed"
    response = api.delete(path)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(api.get(path), 404, "not_found")
    assert_error(api.delete(path), 404, "not_found")


def test_global_packages_cannot_be_changed(api: Api) -> None:
    zone = api.new_zone()
    package = api.get(f"/zones/{zone}/packages/{CALENDAR}").json()
    manifest = simple_manifest("Hijack")
    for method, path, body in [
        ("PUT", f"/zones/{zone}/packages/{CALENDAR}/draft", {"manifest": manifest}),
        ("PUT", f"/zones/{zone}/packages/{package['id']}/draft", {"manifest": manifest}),
        ("POST", f"/zones/{zone}/packages/{CALENDAR}/versions", {}),
        ("POST", f"/zones/{zone}/packages/{CALENDAR}/versions/1/archive", None),
        ("DELETE", f"/zones/{zone}/packages/{CALENDAR}", None),
        ("DELETE", f"/zones/{zone}/packages/{package['id']}", None),
    ]:
        assert_error(api.client.request(method, path, headers=api.auth, json=body), 403, "forbidden", path)
    after = api.get(f"/zones/{zone}/packages/{CALENDAR}").json()
    assert after == package
    assert after["current_version"]["archived_at"] is None
    # The global package still installs.
    assert api.install(zone, CALENDAR, CREDS)["status"] == "completed"
