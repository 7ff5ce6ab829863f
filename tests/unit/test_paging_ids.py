"""Cursors, page requests and ids."""

from __future__ import annotations

import pytest

from zonecat import errors
from zonecat.domain.paging import Cursor, PageRequest
from zonecat.ids import looks_like_id, millis_of, new_id


def test_cursor_round_trip() -> None:
    cursor = Cursor("ins_01m8hhcyab2pkzj0cpr07t", inclusive=True)
    assert Cursor.decode(cursor.encode(), "after") == cursor
    assert len(cursor.encode()) <= 255


@pytest.mark.parametrize("token", ["", "x" * 256, "not-base64!!", "YWJj", "YzF8fDA", "YzJ8aWR8MA", "YzF8aWR8Mg"])
def test_malformed_cursors_are_bad_requests(token: str) -> None:
    with pytest.raises(errors.BadRequest) as caught:
        Cursor.decode(token, "after")
    assert caught.value.details[0].field == "after"


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5"])
def test_limit_out_of_range(limit: str) -> None:
    with pytest.raises(errors.BadRequest):
        PageRequest.parse(limit, None, None)


def test_after_and_before_are_mutually_exclusive() -> None:
    token = Cursor("zon_01m8hhcyab2pkzj0cpr07t").encode()
    with pytest.raises(errors.BadRequest):
        PageRequest.parse(None, token, token)


def test_defaults() -> None:
    request = PageRequest.parse(None, None, None)
    assert request.limit == 20 and request.after is None and request.before is None


def test_ids_are_26_characters_and_sort_by_creation() -> None:
    ids = [new_id("ins") for _ in range(1000)]
    assert all(len(value) == 26 and looks_like_id(value, "ins") for value in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert new_id("tsk", now_ms=1_700_000_000_000).startswith("tsk_")
    # "req" ids are made nowhere else, so no earlier id of that prefix holds the clock back.
    assert millis_of(new_id("req", now_ms=1_700_000_000_123)) == 1_700_000_000_123
    with pytest.raises(ValueError):
        new_id("bogus")
