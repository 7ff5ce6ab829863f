"""The official Keycard SDK (keycardai-api 0.14.0) against a live ``zonecat serve`` (design §3, §6).

The SDK sends no Authorization on catalog calls and needs an explicit base URL (reference §3.2), so every client
here is built by ``sdk()``. Its default httpx client follows redirects; a client that does not is passed as
``http_client`` to see the 303 itself.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from keycardai_api import APIStatusError, BadRequestError, ConflictError, KeycardAPI, NotFoundError
from keycardai_api.types.zones.task import Task

from tests.paging import all_items

GLOBAL_SLUGS = {"google-calendar-api", "google-drive-api", "linear-api", "github-api", "notion-api", "slack-api"}
GOOGLE_ISSUER = "https://accounts.google.com"
INPUTS = {"client_id": "1234567890.apps.example", "client_secret": "s3cret"}


class RequestLog:
    """Counts what actually reached the wire (so a retried request shows up as several)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> None:
        self.requests.append((request.method, request.url.path))


def sdk(server: Any, *, http_client: httpx.Client | None = None, **options: Any) -> KeycardAPI:
    return KeycardAPI(
        base_url=server.url,
        default_headers={"Authorization": f"Bearer {server.token}"},
        http_client=http_client,
        **options,
    )


@pytest.fixture
def client(server: Any) -> Iterator[KeycardAPI]:
    with sdk(server) as instance:
        yield instance


def wait_task(client: KeycardAPI, zone: str, task_id: str, timeout: float = 30.0) -> Task:
    """Poll through the SDK with ``redirect=false`` (always a 200 Task) until the task has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.zones.catalog_tasks.retrieve(task_id, zone_id=zone, extra_query={"redirect": "false"})
        if task.status in ("completed", "failed"):
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish within {timeout}s")


def install(client: KeycardAPI, zone: str, package: str, inputs: dict[str, Any] | None = None) -> Task:
    """Install through the SDK and wait; returns the finished create task."""
    task = client.zones.installs.create(zone, package_id=package, inputs=INPUTS if inputs is None else inputs)
    assert task.operation == "create" and task.status in ("pending", "running"), task
    return wait_task(client, zone, task.id)


def links_by_name(task: Task) -> dict[str, Any]:
    return {link.properties["local_name"]: link for link in task.links or [] if link.properties}


def author(server: Any, zone: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Create a zone package and release its draft as version 1 (zonecat's own endpoints)."""
    with server.client() as http:
        created = http.post(f"/zones/{zone}/packages", json={"manifest": manifest})
        assert created.status_code == 201, created.text
        released = http.post(f"/zones/{zone}/packages/{created.json()['id']}/versions", json={})
        assert released.status_code == 201, released.text
        return dict(created.json())


def entities_of_zone(server: Any, zone: str, **params: str) -> list[dict[str, Any]]:
    with server.client() as http:
        return all_items(http, f"/zones/{zone}/entities", {"limit": "100", **params})


# -- packages ----------------------------------------------------------------------------------------------


def test_packages_list_and_page(client: KeycardAPI, zone: str) -> None:
    listed = client.zones.packages.list(zone, limit=100)
    assert GLOBAL_SLUGS <= {p.slug for p in listed.items}
    assert listed.pagination.after_cursor is None
    # Newest first, and paging by two visits every package exactly once.
    seen: list[str] = []
    page = client.zones.packages.list(zone, limit=2)
    while True:
        assert len(page.items) <= 2
        seen.extend(p.id for p in page.items)
        if not page.pagination.after_cursor:
            break
        page = client.zones.packages.list(zone, limit=2, after=page.pagination.after_cursor)
    assert seen == [p.id for p in listed.items]

    only = client.zones.packages.list(zone, filters_slug="linear-api")
    assert [p.slug for p in only.items] == ["linear-api"]
    api_servers = client.zones.packages.list(zone, kind="api-server,mcp-server", limit=100)
    assert api_servers.items and all(p.kind in ("api-server", "mcp-server") for p in api_servers.items)
    assert client.zones.packages.list(zone, kind="no-such-kind").items == []
    counted = client.zones.packages.list(zone, limit=1, extra_query={"expand[]": "total_count"})
    assert counted.pagination.total_count == len(listed.items)


def test_package_retrieve_by_id_and_slug_draft_and_versions(client: KeycardAPI, zone: str) -> None:
    by_slug = client.zones.packages.retrieve("google-calendar-api", zone_id=zone)
    by_id = client.zones.packages.retrieve(by_slug.id, zone_id=zone)
    assert by_id.id == by_slug.id and by_id.slug == "google-calendar-api"
    assert by_id.kind == "api-server" and by_id.name == "Google Calendar API"
    assert by_id.source is not None and by_id.source.scope == "global"
    assert by_id.current_version is not None and by_id.current_version.version >= 1
    assert by_id.input_state is not None
    assert by_id.input_state.effective_schema is not None

    draft = client.zones.packages.retrieve_draft("google-calendar-api", zone_id=zone)
    assert len(draft.manifest_sha) == 64
    # A global package's draft is the manifest it was loaded from: the current version's.
    assert draft.manifest_sha == by_id.current_version.manifest_sha

    versions = client.zones.packages.versions.list(by_id.id, zone_id=zone)
    assert [v.version for v in versions.items] == sorted((v.version for v in versions.items), reverse=True)
    newest = versions.items[0]
    assert newest.version == by_id.current_version.version and newest.owner_type == "platform"
    by_number = client.zones.packages.versions.retrieve(str(newest.version), zone_id=zone, package_id=by_id.id)
    by_version_id = client.zones.packages.versions.retrieve(newest.id, zone_id=zone, package_id="google-calendar-api")
    assert by_number.id == by_version_id.id == newest.id
    assert by_number.manifest_sha == newest.manifest_sha


def test_zone_package_versions_through_the_sdk(server: Any, client: KeycardAPI, zone: str) -> None:
    manifest = {
        "kind": "custom",
        "name": "SDK Versions",
        "entities": {"s": {"type": "secret", "bindings": '{"identifier": "sdk-v", "name": "v1"}'}},
    }
    package = author(server, zone, manifest)
    manifest["entities"]["s"]["bindings"] = '{"identifier": "sdk-v", "name": "v2"}'
    with server.client() as http:
        assert http.put(f"/zones/{zone}/packages/{package['id']}/draft", json={"manifest": manifest}).status_code == 200
        assert http.post(f"/zones/{zone}/packages/{package['id']}/versions", json={}).status_code == 201

    fetched = client.zones.packages.retrieve("sdk-versions", zone_id=zone)
    assert fetched.id == package["id"] and fetched.source is not None and fetched.source.scope == "zone"
    assert fetched.current_version is not None and fetched.current_version.version == 2
    versions = client.zones.packages.versions.list(package["id"], zone_id=zone)
    assert [v.version for v in versions.items] == [2, 1]
    assert all(v.owner_type == "customer" for v in versions.items)
    assert versions.items[0].manifest_sha != versions.items[1].manifest_sha
    draft = client.zones.packages.retrieve_draft(package["id"], zone_id=zone)
    assert draft.manifest_sha == versions.items[0].manifest_sha
    first = client.zones.packages.versions.retrieve("1", zone_id=zone, package_id="sdk-versions")
    assert first.id == versions.items[1].id


# -- install, task, redirect -------------------------------------------------------------------------------


def test_install_task_303_to_the_active_install(server: Any, client: KeycardAPI, zone: str) -> None:
    created = client.zones.installs.create(zone, package_id="linear-api", inputs=INPUTS)
    assert created.operation == "create" and created.package_slug == "linear-api"
    assert created.install_id and created.package_version and created.package_id
    install_url = f"{server.url}/zones/{zone}/installs/{created.install_id}"

    # A client that does not follow redirects: 200 Task until completed, then the 303 itself.
    with httpx.Client(follow_redirects=False) as raw_http, sdk(server, http_client=raw_http) as plain:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline, "the create task never completed"
            try:
                polled = plain.zones.catalog_tasks.retrieve(created.id, zone_id=zone)
            except APIStatusError as exc:
                assert exc.status_code == 303, exc
                location = exc.response.headers["location"]
                break
            assert polled.status in ("pending", "running"), polled
            assert polled.id == created.id and polled.operation == "create"
            time.sleep(0.05)
    assert location == install_url  # absolute, built from the request's own base URL

    active = client.zones.installs.retrieve(created.install_id, zone_id=zone)
    assert active.status == "active" and active.package_slug == "linear-api"
    assert active.outputs and set(active.outputs) >= {"resource_id", "provider_id"}
    assert "client_secret" not in (active.inputs or {})
    hrefs = {link.href for link in active.links or []}
    assert f"/zones/{zone}/resources/{active.outputs['resource_id']}" in hrefs
    assert f"/zones/{zone}/providers/{active.outputs['provider_id']}" in hrefs

    # The default SDK client follows the 303 and parses the Install as a Task (loose mode).
    followed = client.zones.catalog_tasks.retrieve(created.id, zone_id=zone)
    assert followed.status == "active" and followed.id == created.install_id and followed.operation is None
    raw = client.zones.catalog_tasks.with_raw_response.retrieve(created.id, zone_id=zone)
    assert raw.http_response.status_code == 200
    assert [r.status_code for r in raw.http_response.history] == [303]
    assert raw.http_response.url == httpx.URL(install_url)

    # redirect=false shows the completed task itself, with one link per entity it created.
    done = wait_task(client, zone, created.id)
    assert done.status == "completed" and done.install_id == created.install_id
    assert {link.rel for link in done.links or []} == {"created"}
    assert {link.href for link in done.links or []} == hrefs

    listed = client.zones.installs.list(zone)
    assert [i.id for i in listed.items] == [created.install_id]


def test_adopted_provider_is_preserved_with_a_warning(server: Any, client: KeycardAPI, zone: str) -> None:
    with server.client() as http:
        made = http.post(f"/zones/{zone}/providers", json={"identifier": GOOGLE_ISSUER, "name": "Our Google"})
        assert made.status_code == 201, made.text
        provider_id = made.json()["id"]

    done = install(client, zone, "google-calendar-api")
    assert done.status == "completed", done.error_message
    links = links_by_name(done)
    assert links["google"].rel == "adopted"
    assert links["google"].href == f"/zones/{zone}/providers/{provider_id}"
    assert links["calendar"].rel == "created"
    assert done.install_id is not None
    active = client.zones.installs.retrieve(done.install_id, zone_id=zone)
    assert active.outputs is not None and active.outputs["provider_id"] == provider_id
    resource_id = active.outputs["resource_id"]

    deleting = client.zones.installs.delete(done.install_id, zone_id=zone)
    assert deleting.operation == "delete"
    assert deleting.warnings is not None and len(deleting.warnings) == 1
    warning = deleting.warnings[0]
    assert warning.code == "conflict" and warning.status == 409
    assert provider_id in warning.message and "not created by the catalog" in warning.message
    assert warning.path == f"/zones/{zone}/installs/{done.install_id}"
    assert [(d.code, d.field) for d in warning.details] == [("conflict", "entities.google")]

    finished = wait_task(client, zone, deleting.id)
    assert finished.status == "completed"
    rels = {name: link.rel for name, link in links_by_name(finished).items()}
    assert rels == {"google": "preserved", "calendar": "deleted"}
    # A completed delete task redirects to the install, now deleted (and still readable).
    assert client.zones.catalog_tasks.retrieve(deleting.id, zone_id=zone).status == "deleted"
    # DELETE on a deleted install returns its last delete task; nothing new is started.
    again = client.zones.installs.delete(done.install_id, zone_id=zone)
    assert again.id == deleting.id and again.status == "completed"

    with server.client() as http:
        kept = http.get(f"/zones/{zone}/providers/{provider_id}")
        assert kept.status_code == 200 and kept.json()["name"] == "Our Google"
        assert http.get(f"/zones/{zone}/resources/{resource_id}").status_code == 404
        entity = http.get(f"/zones/{zone}/entities/{provider_id}").json()
        assert entity["managed"] is False and entity["adopted_by"] == []


def test_shared_provider_survives_the_first_uninstall(server: Any, client: KeycardAPI, zone: str) -> None:
    calendar = install(client, zone, "google-calendar-api")
    drive = install(client, zone, "google-drive-api")
    assert calendar.status == drive.status == "completed"
    assert calendar.install_id is not None and drive.install_id is not None
    assert links_by_name(calendar)["google"].rel == "created"
    assert links_by_name(drive)["google"].rel == "shared"
    provider_href = links_by_name(calendar)["google"].href
    assert links_by_name(drive)["google"].href == provider_href
    provider_id = provider_href.rsplit("/", 1)[1]

    deleting = client.zones.installs.delete(calendar.install_id, zone_id=zone)
    assert deleting.warnings is not None and len(deleting.warnings) == 1
    warning = deleting.warnings[0]
    assert warning.code == "conflict" and warning.status == 409
    assert f"still used by install {drive.install_id}" in warning.message
    assert [d.field for d in warning.details] == ["entities.google"]
    assert wait_task(client, zone, deleting.id).status == "completed"

    with server.client() as http:
        entity = http.get(f"/zones/{zone}/entities/{provider_id}").json()
        assert entity["managed"] is True and entity["used_by"] == [drive.install_id]
        assert entity["created_by_install_id"] == calendar.install_id
    assert client.zones.installs.retrieve(drive.install_id, zone_id=zone).status == "active"

    # The last user goes: nothing is preserved, the provider goes with it.
    last = client.zones.installs.delete(drive.install_id, zone_id=zone)
    assert last.warnings == []
    assert wait_task(client, zone, last.id).status == "completed"
    assert entities_of_zone(server, zone) == []


def test_failing_entity_rolls_back_what_the_task_created(server: Any, client: KeycardAPI, zone: str) -> None:
    with server.client() as http:
        mine = http.post(f"/zones/{zone}/secrets", json={"identifier": "rb-adopted", "name": "Mine"})
        assert mine.status_code == 201, mine.text
        mine_id = mine.json()["id"]
    # first → second (adopted) → third (fails at runtime: no such key) → fourth (never reached).
    author(
        server,
        zone,
        {
            "kind": "custom",
            "name": "Rollback Probe",
            "entities": {
                "first": {"type": "secret", "bindings": '{"identifier": "rb-first", "name": "first"}'},
                "second": {
                    "type": "secret",
                    "bindings": '{"identifier": "rb-adopted", "name": "x",'
                    ' "metadata": {"p": entities.first.outputs.id}}',
                },
                "third": {
                    "type": "application",
                    "bindings": '{"identifier": "https://rb.example", "name": entities.inputs.no_such_input,'
                    ' "metadata": {"p": entities.second.outputs.id}}',
                },
                "fourth": {
                    "type": "secret",
                    "bindings": '{"identifier": "rb-fourth", "name": "f",'
                    ' "metadata": {"p": entities.third.outputs.id}}',
                },
            },
        },
    )
    failed = install(client, zone, "rollback-probe", inputs={})
    assert failed.status == "failed"
    assert failed.error_message is not None and "'third'" in failed.error_message
    assert failed.install_id is not None
    # A failed task is a 200 Task even without redirect=false.
    assert client.zones.catalog_tasks.retrieve(failed.id, zone_id=zone).status == "failed"
    assert client.zones.installs.retrieve(failed.install_id, zone_id=zone).status == "failed"

    remaining = entities_of_zone(server, zone)
    assert [e["id"] for e in remaining] == [mine_id]  # the created one is gone, the adopted one untouched
    assert remaining[0]["adopted_by"] == [] and remaining[0]["used_by"] == []
    assert entities_of_zone(server, zone, install_id=failed.install_id) == []
    with server.client() as http:
        events = http.get(f"/zones/{zone}/catalog_tasks/{failed.id}/events").json()["items"]
    outcomes = [(e["kind"], e["local_name"], e["action"]) for e in events if e["kind"] in ("step_done", "step_failed")]
    assert outcomes == [
        ("step_done", "first", "created"),
        ("step_done", "second", "adopted"),
        ("step_failed", "third", None),
        ("step_done", "second", "released"),
        ("step_done", "first", "rolled_back"),
    ]
    assert "fourth" not in {e["local_name"] for e in events}


# -- idempotency and errors --------------------------------------------------------------------------------


def test_same_client_request_id_yields_one_install(server: Any, client: KeycardAPI, zone: str) -> None:
    key = str(uuid.uuid4())
    headers = {"X-Client-Request-ID": key}
    first = client.zones.installs.create(zone, package_id="github-api", inputs=INPUTS, extra_headers=headers)
    second = client.zones.installs.create(zone, package_id="github-api", inputs=INPUTS, extra_headers=headers)
    assert second.id == first.id and second.install_id == first.install_id
    assert [i.id for i in client.zones.installs.list(zone).items] == [first.install_id]
    assert wait_task(client, zone, first.id).status == "completed"
    # After completion the replay returns the same task in its current state.
    third = client.zones.installs.create(zone, package_id="github-api", inputs=INPUTS, extra_headers=headers)
    assert third.id == first.id and third.status == "completed"

    # The same key with another body is a 409 the SDK must not retry.
    log = RequestLog()
    with httpx.Client(event_hooks={"request": [log]}) as http, sdk(server, http_client=http) as counted:
        with pytest.raises(ConflictError) as caught:
            counted.zones.installs.create(
                zone, package_id="github-api", inputs={**INPUTS, "client_id": "other"}, extra_headers=headers
            )
    assert caught.value.status_code == 409
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert log.requests == [("POST", f"/zones/{zone}/installs")]
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "conflict"
    assert len(client.zones.installs.list(zone).items) == 1


def test_delete_while_creating_is_a_409_not_retried(server: Any, zone: str) -> None:
    # A package slow enough (a chain of secrets) that the DELETE arrives while its create task is unfinished.
    author(
        server,
        zone,
        {
            "kind": "custom",
            "name": "Slow Chain",
            "entities": {
                f"s{i:03d}": {
                    "type": "secret",
                    "bindings": f'{{"identifier": "slow-{i}", "name": "s", "metadata": {{"p": '
                    + (f"entities.s{i - 1:03d}.outputs.id" if i else '"root"')
                    + "}}",
                }
                for i in range(200)
            },
        },
    )
    log = RequestLog()
    with httpx.Client(event_hooks={"request": [log]}) as http, sdk(server, http_client=http) as counted:
        task = counted.zones.installs.create(zone, package_id="slow-chain", inputs={})
        assert task.install_id is not None
        log.requests.clear()
        with pytest.raises(ConflictError) as caught:
            counted.zones.installs.delete(task.install_id, zone_id=zone)
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert log.requests == [("DELETE", f"/zones/{zone}/installs/{task.install_id}")]
        still = counted.zones.catalog_tasks.retrieve(task.id, zone_id=zone, extra_query={"redirect": "false"})
        assert still.status in ("pending", "running")
        finished = wait_task(counted, zone, task.id, timeout=60)
        assert finished.status == "completed"
        deleting = counted.zones.installs.delete(task.install_id, zone_id=zone)
        assert wait_task(counted, zone, deleting.id, timeout=60).status == "completed"
    assert entities_of_zone(server, zone) == []


def test_sdk_error_types(server: Any, client: KeycardAPI, zone: str) -> None:
    log = RequestLog()
    with httpx.Client(event_hooks={"request": [log]}) as http, sdk(server, http_client=http) as counted:
        with pytest.raises(NotFoundError) as missing:
            counted.zones.installs.retrieve("ins_00000000000000000000000", zone_id=zone)
        assert missing.value.status_code == 404
        assert isinstance(missing.value.body, dict) and missing.value.body["code"] == "not_found"
        with pytest.raises(NotFoundError):
            counted.zones.installs.delete("ins_00000000000000000000000", zone_id=zone)
        with pytest.raises(NotFoundError):
            counted.zones.catalog_tasks.retrieve("tsk_00000000000000000000000", zone_id=zone)
        with pytest.raises(NotFoundError):
            counted.zones.packages.retrieve("no-such-package", zone_id=zone)
        with pytest.raises(NotFoundError):
            counted.zones.installs.create(zone, package_id="no-such-package", inputs=INPUTS)
        assert len(log.requests) == 5  # a 404 is never retried

        request_id = str(uuid.uuid4())
        with pytest.raises(BadRequestError) as invalid:
            counted.zones.installs.create(
                zone,
                package_id="google-calendar-api",
                inputs={"client_id": "", "scopes": "not-a-list"},
                x_client_request_id=request_id,
            )
    body = invalid.value.body
    assert invalid.value.status_code == 400 and isinstance(body, dict)
    assert body["code"] == "validation_error" and body["status"] == 400
    assert body["request_id"] == request_id and invalid.value.response.headers["x-request-id"] == request_id
    assert body["path"] == f"/zones/{zone}/installs"
    fields = {detail["field"] for detail in body["details"]}
    assert fields == {"inputs.client_id", "inputs.client_secret", "inputs.scopes"}
    assert all(detail["code"] == "validation_error" and detail["message"] for detail in body["details"])
    assert client.zones.installs.list(zone).items == []  # a rejected request creates nothing

    with pytest.raises(BadRequestError) as bad_limit:
        client.zones.installs.list(zone, limit=0)
    assert isinstance(bad_limit.value.body, dict) and bad_limit.value.body["code"] == "bad_request"
