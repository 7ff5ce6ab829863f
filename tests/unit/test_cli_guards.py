"""What the CLI refuses before it can do harm or print a traceback: bad URLs and tokens, files JSON cannot hold,
answers that are not zonecat's, and second attempts of writes that may already be done."""

from __future__ import annotations

from pathlib import Path

import click
import httpx
import pytest

from zonecat.cli import json_yaml
from zonecat.cli.client import Client, replayable
from zonecat.cli.context import State, checked_token, checked_url
from zonecat.cli.inputs import parse_input_value


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://host", "http://[::1", "", "http://", "http://h:99999"])
def test_a_url_that_is_no_http_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(click.BadParameter, match="is not an http:// or https:// URL"):
        checked_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "https://zonecat.example/api", "http://[::1]:8080"])
def test_http_urls_pass(url: str) -> None:
    assert checked_url(url) == url


def test_a_token_loses_its_line_end_and_may_not_hold_other_characters() -> None:
    assert checked_token("zc_abc\r\n") == "zc_abc"
    assert checked_token("  ") is None
    assert checked_token(None) is None
    for bad in ("zc_é", "zc_a\nb", "zc a"):
        with pytest.raises(click.BadParameter, match="only visible ASCII"):
            checked_token(bad)


def test_zone_ids_are_told_from_names_by_their_form() -> None:
    state = State(url="http://zonecat.test", token=None)
    assert state.zone_id("zon_01m8mgdkay49j4cng4pvg0") == "zon_01m8mgdkay49j4cng4pvg0"  # no lookup: no server here
    state._zones["zon_test"] = "zon_01m8mgdkay49j4cng4pvg1"  # as a lookup by name would have found it
    assert state.zone_id("zon_test") == "zon_01m8mgdkay49j4cng4pvg1"


@pytest.mark.parametrize(
    ("raw", "value"),
    [("8080", 8080), ("true", True), ('["a"]', ["a"]), ("NaN", "NaN"), ("Infinity", "Infinity"), ("1e999", "1e999")],
)
def test_an_input_value_is_json_only_when_json_can_hold_it(raw: str, value: object) -> None:
    assert parse_input_value(raw) == value


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "file.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_dates_and_times_stay_the_text_they_are(tmp_path: Path) -> None:
    loaded = json_yaml.load_json_yaml(write(tmp_path, "created: 2024-01-01\nat: 2001-12-14t21:59:43.10-05:00\n"))
    assert loaded == {"created": "2024-01-01", "at": "2001-12-14t21:59:43.10-05:00"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: {b: !!binary aGVsbG8=}\n", "a.b is a bytes"),
        ("a: [1, .nan]\n", "a[1] is nan"),
        ("a: -.inf\n", "a is -inf"),
        ("a: !!set {x, y}\n", "a is a set"),
        ("a: 1\nb: 2\na: 3\n", "found key 'a' twice"),
        ("a: [1, 2\n", "is not valid YAML or JSON"),
        (b"\xff\xfe\x00garbage", "is not UTF-8 text"),
    ],
)
def test_what_json_cannot_hold_is_refused_by_its_place(tmp_path: Path, text: str | bytes, words: str) -> None:
    with pytest.raises(json_yaml.JsonYamlError, match=words.replace("[", r"\[").replace(".", r"\.")):
        json_yaml.load_json_yaml(write(tmp_path, text))


def test_aliases_may_not_expand_past_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_yaml, "MAX_VALUES", 10_000)
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for index, name in enumerate("bcdef"):
        previous = "abcdef"[index]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 10) + "]")
    with pytest.raises(json_yaml.JsonYamlError, match="expands to more than 10,000 values"):
        json_yaml.load_json_yaml(write(tmp_path, "\n".join(lines) + "\n"))
    # the same anchors used a few times are fine
    assert json_yaml.load_json_yaml(write(tmp_path, "a: &a [1, 2]\nb: *a\n")) == {"a": [1, 2], "b": [1, 2]}


def test_only_reads_installs_and_uninstalls_are_sent_again_after_a_lost_answer() -> None:
    assert replayable("GET", "/zones/zon_x/installs")
    assert replayable("POST", "/zones/zon_x/installs")
    assert replayable("DELETE", "/zones/zon_x/installs/ins_y")
    assert not replayable("POST", "/zones")
    assert not replayable("POST", "/tokens")
    assert not replayable("POST", "/zones/zon_x/packages")
    assert not replayable("DELETE", "/zones/zon_x")
    assert not replayable("DELETE", "/zones/zon_x/installs")


def client(handler: httpx.MockTransport) -> Client:
    return Client("http://zonecat.test", "zc_t", transport=handler)


def test_a_write_whose_answer_was_lost_is_not_sent_again() -> None:
    calls: list[str] = []

    def drop(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    with pytest.raises(click.ClickException, match="may have been carried out"):
        client(httpx.MockTransport(drop)).post("/zones", {"name": "z"})
    assert calls == ["POST /zones"]
    calls.clear()
    with pytest.raises(click.ClickException, match="failed"):
        client(httpx.MockTransport(drop)).post("/zones/zon_x/installs", {"package_id": "p"})
    assert len(calls) == 3  # keyed by its request id: sent again, twice


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="<html>hi</html>", headers={"Content-Type": "text/html"}),
        httpx.Response(200),
        httpx.Response(201, json=[1, 2]),
        httpx.Response(200, json="hi"),
    ],
)
def test_an_answer_that_is_not_zonecat_s_is_an_error(response: httpx.Response) -> None:
    with pytest.raises(click.ClickException, match="did not answer like a zonecat API"):
        client(httpx.MockTransport(lambda request: response)).get("/zones")


def test_a_list_whose_items_are_not_objects_is_an_error() -> None:
    answer = httpx.Response(200, json={"items": [1, 2], "pagination": {}})
    with pytest.raises(click.ClickException, match="unexpected list response"):
        client(httpx.MockTransport(lambda request: answer)).list_all("/zones")


def test_yaml_merge_keys_still_load_and_overrides_of_them_are_no_duplicates(tmp_path: Path) -> None:
    text = "base: &base {a: 1, b: 2}\nthing:\n  <<: *base\n  b: 3\n"
    assert json_yaml.load_json_yaml(write(tmp_path, text)) == {"base": {"a": 1, "b": 2}, "thing": {"a": 1, "b": 3}}


def test_a_huge_integer_or_deep_nesting_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(json_yaml.JsonYamlError, match="cannot be read"):
        json_yaml.load_json_yaml(write(tmp_path, "a: " + "9" * 5000 + "\n"))
    with pytest.raises(json_yaml.JsonYamlError, match="nests too deeply"):
        json_yaml.load_json_yaml(write(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n"))
