"""A poll answered from its kept body ahead of the routes (``zonecat.api.kept_polls``): the same answer as
``get_task`` gives, and only where ``get_task`` would give that answer."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.api.conftest import Api
from tests.api.helpers import CALENDAR, CREDS, assert_error, bearer, make_token, pause_worker, start_install
from zonecat.api.context import RateLimiter
from zonecat.api.kept_polls import KeptPolls
from zonecat.api.rendered import RenderedTasks
from zonecat.store import hot
from zonecat.store.direct import WouldWait

EDGE_HEADERS = {"x-content-type-options", "x-frame-options", "referrer-policy", "cache-control", "x-request-id"}


def counting(api: Api, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths answered from a kept body, from now on."""
    kept_polls = api.client.app.front.app.app  # type: ignore[attr-defined]  (HeadAsGet, EdgeMiddleware, KeptPolls)
    assert isinstance(kept_polls, KeptPolls)
    answered: list[str] = []
    kept_body = kept_polls._kept_body

    def counted(scope: Any) -> bytes | None:
        body = kept_body(scope)
        if body is not None:
            answered.append(scope["path"])
        return body

    monkeypatch.setattr(kept_polls, "_kept_body", counted)
    return answered


def ahead(api: Api) -> bool:
    """Whether polls can be answered ahead at all: on SQLite (on PostgreSQL a read is never made on the loop)."""
    return bool(api.client.app.state.ctx.db.direct.loop_capable)  # type: ignore[attr-defined]


def test_a_kept_poll_is_answered_as_get_task_answers_it(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    monkeypatch.setattr(api.client.app.state.ctx, "rendered_tasks", RenderedTasks())  # type: ignore[attr-defined]
    answered = counting(api, monkeypatch)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    rendered = api.get(f"{path}?redirect=false")
    assert answered == []  # no body was kept: get_task rendered it
    for query in ("redirect=false", "redirect=0&x=1", "redirect=true&redirect=No"):
        kept = api.get(f"{path}?{query}")
        assert kept.status_code == 200
        assert kept.content == rendered.content
        same = {name: value for name, value in kept.headers.items() if name != "x-request-id"}
        assert same == {name: value for name, value in rendered.headers.items() if name != "x-request-id"}
        assert EDGE_HEADERS <= set(kept.headers)
        assert kept.headers["x-request-id"] != rendered.headers["x-request-id"]
    assert answered == ([path] * 3 if ahead(api) else [])
    # A client's own request id is echoed, as on every response.
    rid = "5f0c8a52-4b7e-4b51-9d4c-2a8a4a0f4b10"
    echoed = api.get(f"{path}?redirect=false", headers={**api.auth, "X-Client-Request-Id": rid})
    assert echoed.headers["x-request-id"] == rid


def test_every_other_answer_to_a_poll_comes_from_get_task(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = api.new_zone()
    other_zone = api.new_zone()
    pause_worker(api)
    task = start_install(api, zone, CALENDAR, CREDS).json()
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    scoped = make_token(api, "elsewhere", zones=[other_zone])
    revoked = make_token(api, "revoked", zones=[zone])
    assert api.get(path, headers=bearer(revoked["token"])).status_code == 200  # its body is kept now
    answered = counting(api, monkeypatch)
    assert api.get(path, headers=bearer(revoked["token"])).status_code == 200
    assert len(answered) == (1 if ahead(api) else 0)
    answered.clear()

    assert api.delete(f"/tokens/{revoked['id']}").status_code == 204
    assert_error(api.get(path, headers=bearer(revoked["token"])), 401, "unauthorized")
    assert_error(api.get(path, headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    assert_error(api.get(path, headers=bearer(scoped["token"])), 404, "not_found")
    assert_error(api.get(f"/zones/{other_zone}/catalog_tasks/{task['id']}"), 404, "not_found")
    assert_error(api.get(f"{path}?redirect=maybe"), 400, "bad_request")
    assert answered == []


def test_a_completed_task_still_redirects_and_a_rate_limit_still_holds(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    assert api.get(f"{path}?redirect=false").status_code == 200  # kept
    answered = counting(api, monkeypatch)
    moved = api.get(path, follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"].endswith(f"/installs/{task['install_id']}")
    assert answered == []
    # Three requests of allowance, refilled about never: three polls, then the 429, each request spending one.
    ctx = api.client.app.state.ctx  # type: ignore[attr-defined]
    monkeypatch.setattr(ctx, "limiter", RateLimiter(0.001, 3))
    for _ in range(3):
        assert api.get(f"{path}?redirect=false").status_code == 200
    limited = api.get(f"{path}?redirect=false")
    assert_error(limited, 429, "rate_limit_exceeded")
    assert "retry-after" in limited.headers
    assert len(answered) == (3 if ahead(api) else 0)


def test_a_poll_that_meets_a_lock_is_answered_by_get_task(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false"
    first = api.get(path)
    answered = counting(api, monkeypatch)
    reads = api.client.app.state.ctx.db.direct  # type: ignore[attr-defined]
    on_loop = reads.on_loop

    def locked(snapshot: bool = True) -> Any:
        raise WouldWait("database is locked")

    monkeypatch.setattr(reads, "on_loop", locked)
    again = api.get(path)
    assert again.status_code == 200 and again.content == first.content  # read again in a thread
    assert answered == []
    monkeypatch.setattr(reads, "on_loop", on_loop)
    assert api.get(path).content == first.content
    assert answered == ([path.split("?")[0]] if ahead(api) else [])


def test_a_poll_passed_on_is_read_once(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    monkeypatch.setattr(api.client.app.state.ctx, "rendered_tasks", RenderedTasks())  # type: ignore[attr-defined]
    reads: list[str] = []
    token_and_task = hot.token_and_task

    def counted(reader: Any, token_hash: str, zone_id: str, task_id: str) -> hot.Poll:
        reads.append(task_id)
        return token_and_task(reader, token_hash, zone_id, task_id)

    monkeypatch.setattr(hot, "token_and_task", counted)
    requests: list[tuple[str, dict[str, str], int]] = [
        (f"{path}?redirect=false", api.auth, 200),  # no body kept yet: rendered by get_task
        (f"{path}?redirect=false", api.auth, 200),  # kept
        (path, api.auth, 303),
        (f"/zones/{zone}/catalog_tasks/tsk_01m8aaaaaaaaaaaaaaaaaaaaaa", api.auth, 404),
        (path, bearer("zc_not_a_token"), 401),
    ]
    for url, headers, status in requests:
        reads.clear()
        assert api.get(url, headers=headers, follow_redirects=False).status_code == status, url
        assert len(reads) == 1, url


def test_a_row_the_kept_path_cannot_read_is_answered_as_every_error_is(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false"
    token = make_token(api, "damaged")
    assert api.get(path, headers=bearer(token["token"])).status_code == 200  # its body is kept
    # A token row no request could have written (zones must be a list): the read itself fails to make sense of it.
    with api.db.write() as conn:
        conn.execute(sa.text("UPDATE tokens SET zones = '5' WHERE id = :id"), {"id": token["id"]})
    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.get(path, headers=bearer(token["token"]))
    body = assert_error(response, 500, "internal_error")
    assert response.headers.get_list("x-request-id") == [body["request_id"]]
    assert EDGE_HEADERS <= set(response.headers)
