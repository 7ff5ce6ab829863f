"""Regressions found by the API fuzzing campaign (tests/campaigns/fuzz.py): each was a 5xx or a bad input that
was accepted instead of getting the contract's 400."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tests.api.helpers import CALENDAR, CREDS, assert_error

# Superscript two and one are str.isdigit() but not int(); U+0665 (Arabic-Indic five) is int() 5; "1_0" is int() 10.
ODD_NUMBERS = ["%C2%B2", "%C2%B9", "%D9%A5", "1_0", "+5", "%205", "", "-1"]


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_task_events_refuse_odd_numbers_with_400(api: Api, value: str) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}/events"
    for parameter in ("limit", "after_seq", "after"):
        assert_error(api.get(f"{path}?{parameter}={value}"), 400, "bad_request")
    assert api.get(f"{path}?limit=2&after_seq=1").status_code == 200


def test_task_events_check_after_and_after_seq_both(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}/events"
    # found by `make fuzz` (seed 1673173253): a valid `after` hid an invalid `after_seq`
    for query, field in [("after=1&after_seq=%C3%99", "after_seq"), ("after=%C3%99&after_seq=1", "after")]:
        assert assert_error(api.get(f"{path}?{query}"), 400, "bad_request")["details"][0]["field"] == field
    assert_error(api.get(f"{path}?after=1&after_seq=2"), 400, "bad_request")
    both = api.get(f"{path}?after=1&after_seq=1")
    assert both.status_code == 200
    assert [event["seq"] for event in both.json()["items"]][:1] == [2]


@pytest.mark.parametrize("value", ODD_NUMBERS)
def test_list_limit_refuses_odd_numbers_with_400(api: Api, value: str) -> None:
    zone = api.new_zone()
    assert_error(api.get(f"/zones/{zone}/installs?limit={value}"), 400, "bad_request")
    assert_error(api.get(f"/zones?limit={value}"), 400, "bad_request")
    assert api.get("/zones?limit=5").status_code == 200


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A5", "%C3%A9"])
def test_non_ascii_version_references_are_404_not_500(api: Api, value: str) -> None:
    zone = api.new_zone()
    assert_error(api.get(f"/zones/{zone}/packages/{CALENDAR}/versions/{value}"), 404, "not_found")
    assert api.get(f"/zones/{zone}/packages/{CALENDAR}/versions/1").status_code == 200


def test_task_redirect_flag_is_validated(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, CALENDAR, CREDS)
    path = f"/zones/{zone}/catalog_tasks/{task['id']}"
    for flag in ("false", "FALSE", "0", "no"):
        assert api.get(f"{path}?redirect={flag}", follow_redirects=False).status_code == 200
    for flag in ("true", "1", "Yes"):
        assert api.get(f"{path}?redirect={flag}", follow_redirects=False).status_code == 303
    assert_error(api.get(f"{path}?redirect=maybe", follow_redirects=False), 400, "bad_request")


def test_nul_characters_in_the_path_or_query_are_refused(api: Api) -> None:
    zone = api.new_zone()
    for path in (f"/zones/{zone}/installs/ins%00x", f"/zones/{zone}/installs?after=%00", "/zones/%00"):
        response = api.get(path)
        assert response.status_code == 400, (path, response.text)
        body = response.json()
        assert body["code"] == "bad_request" and body["details"][0]["field"] == "url"
        assert response.headers["x-request-id"] == body["request_id"]
