"""Cursor paging (design §3.1): forward then backward visits every item exactly once, even while rows are added."""

from __future__ import annotations

import itertools

from tests.api.conftest import Api
from tests.api.helpers import assert_error, walk


def _make_zones(api: Api, count: int) -> list[str]:
    return [api.new_zone(f"z{index:03d}") for index in range(count)]


def test_walk_forward_and_back(api: Api) -> None:
    created = _make_zones(api, 45)
    newest_first = list(reversed(created))
    forward, backward = walk(api, "/zones", 7)
    assert forward == newest_first
    assert backward == newest_first
    # Every page size gives the same result, including sizes that divide the count exactly.
    for limit in (1, 5, 9, 45, 100):
        assert walk(api, "/zones", limit) == (newest_first, newest_first)


def test_first_and_last_pages(api: Api) -> None:
    created = list(reversed(_make_zones(api, 10)))
    first = api.get("/zones?limit=4").json()
    assert [z["id"] for z in first["items"]] == created[:4]
    assert first["pagination"]["before_cursor"] is None
    assert first["pagination"]["after_cursor"] is not None
    second = api.get(f"/zones?limit=4&after={first['pagination']['after_cursor']}").json()
    assert [z["id"] for z in second["items"]] == created[4:8]
    back = api.get(f"/zones?limit=4&before={second['pagination']['before_cursor']}").json()
    assert [z["id"] for z in back["items"]] == created[:4]
    assert back["pagination"]["before_cursor"] is None
    assert back["pagination"]["after_cursor"] is not None
    last = api.get(f"/zones?limit=4&after={second['pagination']['after_cursor']}").json()
    assert [z["id"] for z in last["items"]] == created[8:]
    assert last["pagination"]["after_cursor"] is None
    assert last["pagination"]["before_cursor"] is not None


def test_walk_while_rows_are_added(api: Api) -> None:
    created = _make_zones(api, 45)
    counter = itertools.count()
    added: list[str] = []

    def add_one() -> None:
        added.append(api.new_zone(f"late{next(counter):03d}"))

    forward, backward = walk(api, "/zones", 7, between_pages=add_one)
    newest_first = list(reversed(created))
    # Forward: every original item exactly once, in order; rows added meanwhile are newer and not in the way.
    assert forward == newest_first
    # Backward: each original item exactly once, newest first; new rows show up only before the originals.
    assert len(backward) == len(set(backward))
    originals = [item for item in backward if item in set(created)]
    assert originals == newest_first
    late = [item for item in backward if item not in set(created)]
    assert set(late) <= set(added)
    assert backward[: len(late)] == late
    assert late == sorted(late, reverse=True)
    assert added  # the walk really did insert rows


def test_total_count(api: Api) -> None:
    _make_zones(api, 12)
    body = api.get("/zones?limit=5&expand[]=total_count").json()
    assert body["pagination"]["total_count"] == 12
    assert len(body["items"]) == 5
    following = api.get(f"/zones?limit=5&expand%5B%5D=total_count&after={body['pagination']['after_cursor']}").json()
    assert following["pagination"]["total_count"] == 12
    assert "total_count" not in api.get("/zones?limit=5").json()["pagination"]


def test_walking_off_the_end_and_turning_around(api: Api) -> None:
    created = list(reversed(_make_zones(api, 6)))
    page = api.get("/zones?limit=3").json()
    page = api.get(f"/zones?limit=3&after={page['pagination']['after_cursor']}").json()
    assert [z["id"] for z in page["items"]] == created[3:]
    assert page["pagination"]["after_cursor"] is None
    back = api.get(f"/zones?limit=3&before={page['pagination']['before_cursor']}").json()
    assert [z["id"] for z in back["items"]] == created[:3]


def test_paging_entity_lists(api: Api) -> None:
    zone = api.new_zone()
    # Entities are cheap to create and page through the same store; a typed collection and the generic list.
    ids = []
    for index in range(15):
        response = api.post(f"/zones/{zone}/secrets", json={"identifier": f"s{index}", "name": f"S{index}"})
        assert response.status_code == 201
        ids.append(response.json()["id"])
    newest_first = list(reversed(ids))
    assert walk(api, f"/zones/{zone}/secrets", 4) == (newest_first, newest_first)
    assert walk(api, f"/zones/{zone}/entities?type=secret", 4) == (newest_first, newest_first)
    assert_error(api.get(f"/zones/{zone}/secrets?limit=0"), 400, "bad_request")
