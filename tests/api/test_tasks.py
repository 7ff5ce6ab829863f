"""Catalog tasks: the 200/303 rule, task lists with filters, ordered events, the install graph."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from tests.api.conftest import Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    LINEAR,
    assert_error,
    create_package,
    delete_and_wait,
    pause_worker,
    run_due_tasks,
    simple_manifest,
    start_install,
)
from zonecat.api import views
from zonecat.api.app import create_app
from zonecat.api.context import AppContext, RateLimiter
from zonecat.api.hot_routes import AskedEverySecond, HotRoutes
from zonecat.api.kept_polls import KeptPolls
from zonecat.api.rendered import RenderedTasks
from zonecat.store import hot
from zonecat.store import tasks as task_store
from zonecat.store import zones as zone_store
from zonecat.store.schema import tasks


def test_pending_task_is_200_and_completed_task_redirects(api: Api) -> None:
    zone = api.new_zone()
    pause_worker(api)
    task = start_install(api, zone, CALENDAR, CREDS).json()
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    pending = api.get(path, follow_redirects=False)
    assert pending.status_code == 200
    assert pending.json()["status"] == "pending"
    assert pending.json()["id"] == task["id"]
    assert pending.json()["links"] == []

    assert run_due_tasks(api) == 1
    completed = api.get(path, follow_redirects=False)
    assert completed.status_code == 303
    assert completed.headers["location"] == f"http://testserver/zones/{zone}/installs/{task['install_id']}"
    # Following the redirect lands on the install.
    followed = api.get(path, follow_redirects=True)
    assert followed.status_code == 200
    assert followed.json()["id"] == task["install_id"]
    assert followed.json()["status"] == "active"

    for flag in ("false", "0"):
        plain = api.get(f"{path}?redirect={flag}", follow_redirects=False)
        assert plain.status_code == 200
        assert plain.json()["status"] == "completed"
        assert [link["rel"] for link in plain.json()["links"]] == ["created", "created"]

    # A completed delete task redirects to the (deleted) install, too.
    accepted = delete_with_driver(api, zone, task["install_id"])
    redirect = api.get(f"/zones/{zone}/catalog_tasks/{accepted}", follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"].endswith(f"/zones/{zone}/installs/{task['install_id']}")
    assert api.get(redirect.headers["location"]).json()["status"] == "deleted"


def delete_with_driver(api: Api, zone: str, install_id: str) -> str:
    """Delete an install while the worker is paused, running its task here; returns the task id."""
    response = api.delete(f"/zones/{zone}/installs/{install_id}")
    assert response.status_code == 202
    assert run_due_tasks(api) == 1
    return str(response.json()["id"])


def test_redirect_location_keeps_the_base_url(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    response = api.client.get(
        f"https://api.example.org:8443/zones/{zone}/catalog_tasks/{task['id']}",
        headers=api.auth,
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"https://api.example.org:8443/zones/{zone}/installs/{task['install_id']}"


def test_locations_keep_the_prefix_the_app_is_mounted_under(api: Api) -> None:
    parent = FastAPI()
    ctx = AppContext(db=api.db, settings=api.worker.settings, limiter=RateLimiter(0, 1), wake_worker=api.worker.wake)
    parent.mount("/api", create_app(ctx))
    zone = api.new_zone()
    with TestClient(parent, base_url="https://catalog.example") as client:
        response = client.post(
            f"/api/zones/{zone}/installs", headers=api.auth, json={"package_id": CALENDAR, "inputs": CREDS}
        )
        assert response.status_code == 202
        task = response.json()
        assert response.headers["location"] == f"https://catalog.example/api/zones/{zone}/catalog_tasks/{task['id']}"
        api.wait_task(zone, task["id"])
        redirect = client.get(response.headers["location"], headers=api.auth, follow_redirects=False)
        assert redirect.status_code == 303
        assert redirect.headers["location"] == f"https://catalog.example/api/zones/{zone}/installs/{task['install_id']}"
        followed = client.get(response.headers["location"], headers=api.auth)
        assert followed.status_code == 200
        assert followed.json()["id"] == task["install_id"]


def test_failed_task_is_200(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Broken At Runtime")
    manifest["entities"]["app"]["bindings"] = '{"identifier": entities.inputs.missing_key, "name": "n"}'
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"], {"app_name": "x"})
    response = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}", follow_redirects=False)
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert "app" in response.json()["error_message"]


def test_unknown_task_is_404(api: Api) -> None:
    zone = api.new_zone()
    for path in (f"/zones/{zone}/catalog_tasks/tsk_nope", f"/zones/{zone}/catalog_tasks/tsk_nope/events"):
        assert_error(api.get(path), 404, "not_found", path)
    # A task of another zone is not found here either.
    other = api.new_zone()
    task = api.install(other, CALENDAR, CREDS)
    assert_error(api.get(f"/zones/{zone}/catalog_tasks/{task['id']}"), 404, "not_found")


def test_task_list_filters(api: Api) -> None:
    zone = api.new_zone()
    calendar = api.install(zone, CALENDAR, CREDS)
    linear = api.install(zone, LINEAR, CREDS)
    _, deleted = delete_and_wait(api, zone, linear["install_id"])
    bad = create_package(api, zone, simple_manifest("Doomed"))
    manifest = simple_manifest("Doomed")
    manifest["entities"]["app"]["bindings"] = '{"identifier": entities.inputs.nope, "name": "n"}'
    api.put(f"/zones/{zone}/packages/{bad['id']}/draft", json={"manifest": manifest})
    api.post(f"/zones/{zone}/packages/{bad['id']}/versions")
    failed = api.install(zone, bad["id"], {"app_name": "x"})
    assert failed["status"] == "failed"

    def ids(query: str) -> list[str]:
        response = api.get(f"/zones/{zone}/catalog_tasks{query}")
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"items", "pagination"}
        return [item["id"] for item in response.json()["items"]]

    everything = [failed["id"], deleted["id"], linear["id"], calendar["id"]]
    assert ids("") == everything
    assert ids(f"?install_id={linear['install_id']}") == [deleted["id"], linear["id"]]
    assert ids("?operation=delete") == [deleted["id"]]
    assert ids("?operation=create") == [failed["id"], linear["id"], calendar["id"]]
    assert ids("?status=failed") == [failed["id"]]
    assert ids("?status=completed&operation=create") == [linear["id"], calendar["id"]]
    assert ids("?status=pending") == []
    assert ids("?install_id=ins_nothing") == []
    counted = api.get(f"/zones/{zone}/catalog_tasks?expand[]=total_count&status=completed").json()
    assert counted["pagination"]["total_count"] == 3
    assert_error(api.get(f"/zones/{zone}/catalog_tasks?status=done"), 400, "bad_request")
    assert_error(api.get(f"/zones/{zone}/catalog_tasks?operation=update"), 400, "bad_request")


def test_events_are_ordered_in_topological_order(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    response = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events")
    assert response.status_code == 200
    events = response.json()["items"]
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(event["task_id"] == task["id"] for event in events)
    statuses = [event["status"] for event in events if event["kind"] == "status"]
    assert statuses == ["pending", "running", "completed"]
    steps = [(event["kind"], event["local_name"]) for event in events if event["kind"].startswith("step")]
    # The provider comes before the resource that links to it.
    assert steps == [
        ("step_started", "google"),
        ("step_done", "google"),
        ("step_started", "calendar"),
        ("step_done", "calendar"),
    ]
    done = [event for event in events if event["kind"] == "step_done"]
    assert [event["action"] for event in done] == ["created", "created"]
    assert [event["entity_type"] for event in done] == ["provider", "resource"]
    assert events[0]["kind"] == "status" and events[-1]["kind"] == "status"
    # Paging through events by sequence number.
    first = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events?limit=2").json()
    assert [event["seq"] for event in first["items"]] == seqs[:2]
    rest = api.get(
        f"/zones/{zone}/catalog_tasks/{task['id']}/events?after={first['pagination']['after_cursor']}"
    ).json()
    assert [event["seq"] for event in rest["items"]] == seqs[2:]


def test_install_graph(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    response = api.get(f"/zones/{zone}/installs/{task['install_id']}/graph")
    assert response.status_code == 200
    graph = response.json()
    assert graph["install_id"] == task["install_id"]
    assert graph["status"] == "active"
    assert [node["local_name"] for node in graph["nodes"]] == ["google", "calendar"]
    nodes = {node["local_name"]: node for node in graph["nodes"]}
    assert nodes["google"]["type"] == "provider"
    assert nodes["google"]["entity_id"] == install["outputs"]["provider_id"]
    assert nodes["google"]["action"] == "created"
    assert nodes["calendar"]["identifier"] == "https://www.googleapis.com/calendar/v3"
    assert graph["edges"] == [{"from": "calendar", "to": "google", "rel": "credential-provider"}]
    assert_error(api.get(f"/zones/{zone}/installs/ins_nope/graph"), 404, "not_found")


def test_a_task_of_many_entities_is_read_whole(api: Api) -> None:
    # Over 200 events: the task read moves off the event loop to a thread (routes/installs.py); same answer.
    entities = {
        f"s{index}": {"type": "secret", "bindings": f'{{"identifier": "many-{index}", "name": "secret {index}"}}'}
        for index in range(150)
    }
    manifest = {"kind": "custom", "name": "many secrets", "entities": entities}
    zone = api.new_zone()
    package = create_package(api, zone, manifest)
    task = api.install(zone, package["id"])
    assert task["status"] == "completed"
    again = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false")
    assert again.status_code == 200
    body = again.json()
    assert sorted(link["titles"]["en"] for link in body["links"]) == sorted(entities)
    assert {link["rel"] for link in body["links"]} == {"created"}


def test_the_lean_routes_answer_other_methods_and_are_documented_like_every_route(api: Api) -> None:
    # It is served ahead of FastAPI's stack (zonecat.api.hot_routes); nothing may tell.
    zone = api.new_zone()
    pause_worker(api)
    task = start_install(api, zone, CALENDAR, CREDS).json()
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    for method in ("POST", "PUT", "DELETE"):
        refused = api.client.request(method, path, headers=api.auth)
        assert refused.status_code == 400 and refused.headers["allow"] == "GET", method
        assert_error(refused, 400, "bad_request")
    head = api.client.head(path, headers=api.auth)  # answered as GET, without the body
    assert (head.status_code, head.content) == (200, b"")
    assert api.get(path).json()["id"] == task["id"]
    # Allow names every method of the path, whichever route matched first.
    assert api.client.put(f"/zones/{zone}/installs", headers=api.auth).headers["allow"] == "GET, POST"
    install = f"/zones/{zone}/installs/{task['install_id']}"
    assert api.client.post(install, headers=api.auth).headers["allow"] == "DELETE, GET"
    missing = api.get(f"/zones/{zone}/catalog_tasks/tsk_missing")
    assert_error(missing, 404, "not_found")
    operation = api.get("/openapi.json").json()["paths"]["/zones/{zone_id}/catalog_tasks/{task_id}"]
    assert set(operation) == {"get"}
    assert [p["name"] for p in operation["get"]["parameters"]] == ["zone_id", "task_id", "redirect"]
    assert {"200", "303", "404"} <= set(operation["get"]["responses"])


def _rendered_now(api: Api, zone: str, task_id: str) -> bytes:
    """The task's body rendered from the database through SQLAlchemy, as no cache could have kept it."""
    with api.db.read() as conn:
        row = task_store.get_task(conn, zone, task_id)
        assert row is not None
        return bytes(JSONResponse(views.task_view(conn, row)).body)


def test_a_polled_tasks_body_is_always_the_one_its_row_renders(api: Api) -> None:
    # Polls answer a body kept by the key of the row it was rendered from (zonecat.api.rendered).
    zone = api.new_zone()
    pause_worker(api)
    task = start_install(api, zone, CALENDAR, CREDS).json()
    path = f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false"
    kept = api.client.app.state.ctx.rendered_tasks  # type: ignore[attr-defined]

    def poll() -> bytes:
        response = api.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
        return bytes(response.content)

    pending = poll()
    assert pending == poll() == _rendered_now(api, zone, task["id"])
    assert b'"status":"pending"' in pending and len(kept) >= 1
    assert run_due_tasks(api) == 1
    completed = poll()
    assert completed == poll() == _rendered_now(api, zone, task["id"])
    assert b'"status":"completed"' in completed and completed.count(b'"rel":"created"') == 2
    # A change no event accompanies (a delete's worker adds a warning, in the same millisecond) is seen at once.
    with api.db.write() as conn:
        conn.execute(tasks.update().where(tasks.c.id == task["id"]).values(warnings=[{"message": "added"}]))
    changed = poll()
    assert changed != completed and b'"warnings":[{"message":"added"}]' in changed
    assert changed == _rendered_now(api, zone, task["id"])
    # A kept body is never an answer to whom the row would not be: the zone's check comes first.
    other = api.new_zone()
    assert_error(api.get(f"/zones/{other}/catalog_tasks/{task['id']}"), 404, "not_found")
    gone = api.get(f"/zones/zon_01m8aaaaaaaaaaaaaaaaaaaaaa/catalog_tasks/{task['id']}")
    assert "zone zon_01m8aaaaaaaaaaaaaaaaaaaaaa not found" in assert_error(gone, 404, "not_found")["message"]


@pytest.mark.parametrize("hot_route", [True, False])
def test_an_unexpected_error_is_a_500_with_every_edge_header(
    api: Api, monkeypatch: pytest.MonkeyPatch, hot_route: bool
) -> None:
    zone = api.new_zone()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken read")

    if hot_route:
        monkeypatch.setattr(hot, "token_and_task", broken)
        path = f"/zones/{zone}/catalog_tasks/tsk_01m8aaaaaaaaaaaaaaaaaaaaaa"
    else:
        monkeypatch.setattr(task_store, "list_tasks", broken)
        path = f"/zones/{zone}/catalog_tasks"
    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.get(path, headers=api.auth)
    body = assert_error(response, 500, "internal_error")
    assert "broken read" not in response.text
    assert response.headers.get_list("x-request-id") == [body["request_id"]]
    assert response.headers["x-content-type-options"] == "nosniff"
    # Without raise_server_exceptions=False the exception reaches the server (which logs it), as Starlette does.
    with pytest.raises(RuntimeError, match="broken read"):
        api.get(path)


def test_a_poll_racing_its_zones_deletion_is_a_404_never_a_body_without_links(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The poll reads without a snapshot: its zone is deleted (tasks and events in one transaction) after the task
    # row was read and before its events are. It must not answer the completed task with no links.
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    assert task["status"] == "completed"
    delete_and_wait(api, zone, task["install_id"])
    read_events = hot.step_outcomes

    def delete_zone() -> None:
        with api.db.write() as conn:
            zone_store.delete_zone(conn, zone)

    def events_then_zone_deleted(*args: Any) -> Any:
        found = read_events(*args)
        deleting = threading.Thread(target=delete_zone)  # another connection, as another request would
        deleting.start()
        deleting.join()
        return found

    monkeypatch.setattr(hot, "step_outcomes", events_then_zone_deleted)
    ctx = api.client.app.state.ctx  # type: ignore[attr-defined]
    ctx.rendered_tasks = RenderedTasks()  # the waits above kept the completed body: this poll renders it
    racing = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false")
    assert "not found" in assert_error(racing, 404, "not_found")["message"]
    assert len(ctx.rendered_tasks) == 0


def test_with_native_telemetry_on_the_hot_requests_go_through_fastapi(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI traces only what its own stack serves: while its instrumentation is on, nothing is dispatched ahead.
    app = api.client.app
    kept_polls = app.front.app.app  # type: ignore[attr-defined]  (HeadAsGet, EdgeMiddleware, KeptPolls)
    assert isinstance(kept_polls, KeptPolls)
    hot_routes = kept_polls.app
    assert isinstance(hot_routes, HotRoutes)
    telemetry = getattr(app, "_native_telemetry", None)
    if telemetry is not None:
        assert hot_routes.instrumented is kept_polls.instrumented
        assert isinstance(hot_routes.instrumented, AskedEverySecond)
        assert hot_routes.instrumented.predicate == telemetry.enabled
    served_ahead: list[str] = []
    serve = hot_routes._serve

    async def counted(endpoint: Any, scope: Any, receive: Any, send: Any) -> None:
        served_ahead.append(scope["path"])
        await serve(endpoint, scope, receive, send)

    monkeypatch.setattr(hot_routes, "_serve", counted)
    kept_body = kept_polls._kept_body

    def kept(scope: Any) -> bytes | None:
        body = kept_body(scope)
        if body is not None:
            served_ahead.append(f"kept {scope['path']}")
        return body

    monkeypatch.setattr(kept_polls, "_kept_body", kept)
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    for _ in range(2):
        assert api.get(f"{path}?redirect=false").json()["status"] == "completed"
    # The install's POST and its polls; on SQLite the second one answered from its kept body.
    assert served_ahead[-1] == (f"kept {path}" if app.state.ctx.db.direct.loop_capable else path)
    served_ahead.clear()
    monkeypatch.setattr(hot_routes, "instrumented", lambda: True)
    monkeypatch.setattr(kept_polls, "instrumented", lambda: True)
    assert api.get(f"{path}?redirect=false").json()["status"] == "completed"
    assert api.get(path, follow_redirects=False).status_code == 303
    assert_error(api.get(f"/zones/{zone}/catalog_tasks/tsk_01m8aaaaaaaaaaaaaaaaaaaaaa"), 404, "not_found")
    accepted, finished = delete_and_wait(api, zone, task["install_id"])
    assert accepted["operation"] == "delete"
    assert finished["status"] == "completed"
    again = start_install(api, zone, CALENDAR, CREDS)
    assert again.status_code == 202 and again.headers["location"].startswith("http://testserver/zones/")
    assert served_ahead == []
