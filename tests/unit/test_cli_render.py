"""Pure parts of the CLI: graph text, input parsing, manifest summaries, task progress and the HTTP client."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import click
import httpx
import pytest

from zonecat.cli import graphtext
from zonecat.cli.client import ApiError, Client
from zonecat.cli.inputs import load_inputs_file, parse_input_value, parse_inputs
from zonecat.cli.manifest_file import load_manifest_file, slugify, summarize
from zonecat.cli.progress import Steps, event_line, watch_task
from zonecat.domain.manifest import slugify as domain_slugify

GRAPH: dict[str, Any] = {
    "install_id": "ins_01",
    "status": "active",
    "nodes": [
        {
            "local_name": "calendar",
            "type": "resource",
            "identifier": "https://www.googleapis.com/calendar/v3",
            "entity_id": "res_1",
            "href": "/zones/zon_1/resources/res_1",
            "action": "created",
        },
        {
            "local_name": "google",
            "type": "provider",
            "identifier": "https://accounts.google.com",
            "entity_id": "prv_1",
            "href": "/zones/zon_1/providers/prv_1",
            "action": "shared",
        },
    ],
    "edges": [{"from": "calendar", "to": "google", "rel": "credential-provider"}],
}


# --- graph text ---------------------------------------------------------------------------------------------


def test_dependency_order_puts_dependencies_first() -> None:
    assert graphtext.dependency_order(GRAPH) == ["google", "calendar"]


def test_dependency_order_falls_back_to_node_order_on_a_cycle() -> None:
    cyclic = {
        "nodes": [{"local_name": "a"}, {"local_name": "b"}],
        "edges": [{"from": "a", "to": "b", "rel": "x"}, {"from": "b", "to": "a", "rel": "x"}],
    }
    assert graphtext.dependency_order(cyclic) == ["a", "b"]


def test_dependencies_lists_each_pair_once() -> None:
    graph = {**GRAPH, "edges": [*GRAPH["edges"], *GRAPH["edges"], {"from": "calendar", "to": "google"}]}
    assert graphtext.dependencies(graph) == {
        "calendar": [("google", "credential-provider"), ("google", "depends-on")],
        "google": [],
    }


def test_to_dot() -> None:
    assert graphtext.to_dot(GRAPH) == (
        'digraph "ins_01" {\n'
        "  rankdir=LR;\n"
        "  node [shape=box];\n"
        '  "google" [label="google\\nprovider (shared)\\nhttps://accounts.google.com"];\n'
        '  "calendar" [label="calendar\\nresource (created)\\nhttps://www.googleapis.com/calendar/v3"];\n'
        '  "calendar" -> "google" [label="credential-provider"];\n'
        "}\n"
    )


def test_to_dot_escapes_quotes_and_backslashes() -> None:
    graph = {"install_id": "i", "nodes": [{"local_name": 'we"ird\\', "type": "secret"}], "edges": []}
    assert '"we\\"ird\\\\" [label="we\\"ird\\\\\\nsecret"];' in graphtext.to_dot(graph)


def test_to_mermaid() -> None:
    assert graphtext.to_mermaid(GRAPH) == (
        "flowchart LR\n"
        '  n_google["google<br/>provider (shared)<br/>https://accounts.google.com"]\n'
        '  n_calendar["calendar<br/>resource (created)<br/>https://www.googleapis.com/calendar/v3"]\n'
        "  n_calendar -->|credential-provider| n_google\n"
    )


def test_to_mermaid_makes_safe_unique_ids_and_escapes_labels() -> None:
    graph = {
        "nodes": [{"local_name": "a-b", "type": 'x"<y>'}, {"local_name": "a_b", "type": "t"}],
        "edges": [{"from": "a-b", "to": "a_b", "rel": "p|q"}],
    }
    text = graphtext.to_mermaid(graph)
    # a_b comes first (a-b depends on it), so it gets the plain id.
    assert text.splitlines()[1:] == [
        '  n_a_b["a_b<br/>t"]',
        '  n_a_b_2["a-b<br/>x#quot;#lt;y#gt;"]',
        "  n_a_b_2 -->|p#124;q| n_a_b",
    ]


def test_empty_graph() -> None:
    assert graphtext.to_mermaid({"nodes": [], "edges": []}) == "flowchart LR\n"
    assert graphtext.to_dot({}).startswith('digraph "install" {')


# --- inputs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["a"]', ["a"]),
        ('{"k": 1}', {"k": 1}),
        ("42", 42),
        ("true", True),
        ("null", None),
        ('"quoted"', "quoted"),
        ("plain text", "plain text"),
        ("abc.apps.googleusercontent.com", "abc.apps.googleusercontent.com"),
        ("", ""),
    ],
)
def test_parse_input_value_without_schema(raw: str, expected: object) -> None:
    assert parse_input_value(raw) == expected


def test_parse_input_value_keeps_strings_for_string_properties() -> None:
    assert parse_input_value("12345", "string") == "12345"
    assert parse_input_value("true", "string") == "true"
    assert parse_input_value('"x"', "string") == "x"
    assert parse_input_value('["a"]', "array") == ["a"]


def test_parse_inputs_overlays_pairs_on_the_file_and_uses_the_schema() -> None:
    schema = {"properties": {"client_id": {"type": "string"}, "scopes": {"type": "array"}}}
    inputs = parse_inputs(
        ["client_id=12345", 'scopes=["a", "b"]', "client_secret=s=e=c", "client_id=6789"],
        base={"client_secret": "old", "extra": 1},
        schema=schema,
    )
    assert inputs == {"client_id": "6789", "scopes": ["a", "b"], "client_secret": "s=e=c", "extra": 1}


@pytest.mark.parametrize("pair", ["novalue", "=x"])
def test_parse_inputs_rejects_pairs_without_a_key(pair: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_inputs([pair])


def test_load_inputs_file_reads_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("client_id: abc\nscopes: [x, y]\n")
    (tmp_path / "b.json").write_text(json.dumps({"n": 1}))
    (tmp_path / "empty.yaml").write_text("")
    assert load_inputs_file(tmp_path / "a.yaml") == {"client_id": "abc", "scopes": ["x", "y"]}
    assert load_inputs_file(tmp_path / "b.json") == {"n": 1}
    assert load_inputs_file(tmp_path / "empty.yaml") == {}


def test_load_inputs_file_rejects_non_mappings(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(click.BadParameter, match="mapping"):
        load_inputs_file(tmp_path / "list.yaml")
    with pytest.raises(click.BadParameter, match="cannot read"):
        load_inputs_file(tmp_path / "missing.yaml")


# --- manifests ----------------------------------------------------------------------------------------------

MANIFEST = """
kind: api-server
name: Acme API (test)
inputs:
  schema:
    type: object
    required: [client_id]
    properties: {client_id: {type: string}, scopes: {type: array}}
entities:
  idp:
    type: provider
    bindings: '{"identifier": "https://idp.acme.test", "name": "entities.fake inside a string"}'
  api:
    type: resource
    bindings: '{"identifier": "https://api.acme.test", "credential_provider_id": entities.idp.outputs.id,
      "scopes": entities.inputs.scopes}'
    links: [{rel: credential-provider, href: "#idp"}, {rel: docs, href: "https://acme.test"}]
  app:
    type: application
    links: [{rel: uses, href: "#api"}]
outputs:
  schema: {type: object, properties: {api_id: {type: string}}}
  bindings: '{"api_id": entities.api.outputs.id}'
"""


def test_slugify() -> None:
    assert slugify("Google Calendar API") == "google-calendar-api"
    assert slugify("  Acme -- API (v2)!") == "acme-api-v2"
    assert slugify("Café Ünïcode") == "cafe-unicode"
    assert slugify("!!!") == "package"
    assert slugify("x" * 70 + " y") == "x" * 63


@pytest.mark.parametrize("name", ["Google Calendar API", " a--b ", "Émile's API", "!!!", "x" * 62 + " yz", "A1_b2"])
def test_slugify_matches_the_server(name: str) -> None:
    assert slugify(name) == domain_slugify(name)


def test_summarize_a_manifest_file(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(MANIFEST)
    summary = summarize(load_manifest_file(path))
    assert summary["slug"] == "acme-api-test"
    assert summary["kind"] == "api-server"
    assert summary["inputs"] == ["client_id", "scopes"]
    assert summary["required_inputs"] == ["client_id"]
    assert summary["outputs"] == ["api_id"]
    assert summary["entities"] == [
        {"local_name": "idp", "type": "provider", "depends_on": []},
        {"local_name": "api", "type": "resource", "depends_on": ["idp"]},
        {"local_name": "app", "type": "application", "depends_on": ["api"]},
    ]


def test_load_manifest_file_rejects_non_mappings(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("[1, 2]")
    with pytest.raises(click.ClickException, match="mapping"):
        load_manifest_file(path)


# --- task progress ------------------------------------------------------------------------------------------

EVENTS: list[dict[str, Any]] = [
    {"seq": 1, "kind": "status", "status": "running"},
    {"seq": 2, "kind": "step_started", "local_name": "google", "entity_type": "provider"},
    {"seq": 3, "kind": "step_done", "local_name": "google", "entity_type": "provider", "action": "created",
     "entity_id": "prv_1"},
    {"seq": 4, "kind": "step_started", "local_name": "calendar", "entity_type": "resource"},
    {"seq": 5, "kind": "step_failed", "local_name": "calendar", "message": "boom"},
    {"seq": 6, "kind": "step_done", "local_name": "google", "action": "rolled_back", "entity_id": "prv_1"},
    {"seq": 7, "kind": "status", "status": "failed", "message": "calendar: boom"},
]  # fmt: skip


def test_event_lines() -> None:
    assert [event_line(e) for e in EVENTS] == [
        "task running",
        "google (provider): started",
        "google (provider): created prv_1",
        "calendar (resource): started",
        "calendar: failed: boom",
        "google (?): rolled_back prv_1",
        "task failed: calendar: boom",
    ]
    assert event_line(EVENTS[5], "provider") == "google (provider): rolled_back prv_1"


def test_steps_track_the_latest_state_of_each_entity() -> None:
    steps = Steps()
    for event in EVENTS:
        steps.apply(event)
    assert [(s.local_name, s.entity_type, s.state, s.entity_id) for s in steps.steps.values()] == [
        ("google", "provider", "rolled_back", "prv_1"),
        ("calendar", "resource", "failed", ""),
    ]


class FakeServer:
    """Answers task and event reads: the task turns ``failed`` on the third read; events arrive in two batches."""

    def __init__(self) -> None:
        self.task_reads = 0
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/events"):
            after = int(request.url.params["after_seq"])
            visible = EVENTS[:4] if self.task_reads < 3 else EVENTS
            return httpx.Response(200, json={"items": [e for e in visible if e["seq"] > after], "pagination": {}})
        self.task_reads += 1
        status = "failed" if self.task_reads >= 3 else "running"
        return httpx.Response(200, json={"id": "tsk_1", "operation": "create", "status": status})


def test_watch_task_prints_one_line_per_event_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    server = FakeServer()
    client = Client("http://zonecat.test/api", "tok", transport=httpx.MockTransport(server))
    task = watch_task(client, "zon_1", "tsk_1", out=Console(force_terminal=False), sleep=lambda _: None)
    assert task["status"] == "failed"
    lines = capsys.readouterr().out.splitlines()
    # The rolled_back event has no entity_type of its own; the watcher remembers it from step_started.
    assert lines == [event_line(e, "provider" if e["seq"] == 6 else None) for e in EVENTS]
    task_reads = [r for r in server.requests if not r.url.path.endswith("/events")]
    assert all(r.url.params["redirect"] == "false" for r in task_reads)
    assert all(r.url.path == "/api/zones/zon_1/catalog_tasks/tsk_1" for r in task_reads)
    assert all(r.headers["Authorization"] == "Bearer tok" for r in server.requests)


def test_watch_task_live_display_ends_with_every_step() -> None:
    from rich.console import Console

    out = Console(force_terminal=True, width=120, record=True)
    client = Client("http://zonecat.test", None, transport=httpx.MockTransport(FakeServer()))
    task = watch_task(client, "zon_1", "tsk_1", out=out, sleep=lambda _: None)
    assert task["status"] == "failed"
    text = out.export_text()
    assert "rolled_back" in text and "failed: boom" in text


# --- HTTP client --------------------------------------------------------------------------------------------


def test_api_errors_print_code_message_and_details() -> None:
    body = {
        "code": "validation_error",
        "message": "inputs are invalid",
        "status": 400,
        "details": [{"code": "validation_error", "field": "inputs.client_id", "message": "is required"}],
    }
    client = Client("http://t", None, transport=httpx.MockTransport(lambda r: httpx.Response(400, json=body)))
    with pytest.raises(ApiError) as caught:
        client.post("/zones/z/installs", {"package_id": "p"})
    assert caught.value.code == "validation_error"
    assert caught.value.format_message() == "validation_error: inputs are invalid\n  inputs.client_id: is required"


def test_writes_carry_one_request_id_reused_on_retries() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            return httpx.Response(
                503, json={"code": "service_unavailable", "message": "x"}, headers={"Retry-After": "0"}
            )
        return httpx.Response(202, json={"id": "tsk_1"})

    client = Client("http://t", None, transport=httpx.MockTransport(handler))
    assert client.post("/zones/z/installs", {"package_id": "p"}) == {"id": "tsk_1"}
    keys = {r.headers["X-Client-Request-ID"] for r in seen}
    assert len(seen) == 2 and len(keys) == 1
    uuid.UUID(keys.pop())
    client.get("/zones")
    assert "X-Client-Request-ID" not in seen[-1].headers


def test_lists_page_through_everything_or_up_to_a_limit() -> None:
    items = [{"id": f"i{n}"} for n in range(250)]

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("after", "0"))
        end = start + int(request.url.params["limit"])
        after = str(end) if end < len(items) else None
        return httpx.Response(200, json={"items": items[start:end], "pagination": {"after_cursor": after}})

    client = Client("http://t", None, transport=httpx.MockTransport(handler))
    assert [i["id"] for i in client.list_all("/x")["items"]] == [i["id"] for i in items]
    assert len(client.list_all("/x", limit=150)["items"]) == 150
    assert len(client.list_all("/x", limit=5)["items"]) == 5


def test_connection_refused_names_the_url() -> None:
    client = Client("http://127.0.0.1:9", None)
    with pytest.raises(click.ClickException, match=r"http://127\.0\.0\.1:9"):
        client.get("/zones")


def test_non_json_errors_still_read_well() -> None:
    client = Client("http://t", None, transport=httpx.MockTransport(lambda r: httpx.Response(404, text="nope")))
    with pytest.raises(ApiError, match="http_404: nope"):
        client.get("/x")


def test_a_live_display_taller_than_the_screen_shows_the_latest_steps() -> None:
    from rich.console import Console

    from zonecat.cli.progress import _table

    steps = Steps()
    for index in range(40):
        steps.apply({"seq": index + 1, "kind": "step_started", "local_name": f"e{index:02}", "entity_type": "secret"})
    out = Console(force_terminal=True, width=100, height=20, record=True)
    out.print(_table({"id": "tsk_1", "operation": "create", "status": "running"}, steps, room=10))
    text = out.export_text()
    assert "… 31 earlier steps" in text
    assert "e39" in text and "e31" in text
    assert "e30" not in text and "e00" not in text
    everything = Console(force_terminal=True, width=100, record=True)
    everything.print(_table({"id": "tsk_1", "operation": "create", "status": "completed"}, steps))
    assert "e00" in everything.export_text() and "earlier" not in everything.export_text()


def test_a_live_display_ended_by_a_timeout_leaves_its_steps_on_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    import rich.live
    from rich.console import Console

    from zonecat.cli.progress import TaskTimeout

    class Erased:
        """A live display as the screen ends up with it once it is over: nothing (it is transient)."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> Erased:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def update(self, renderable: object) -> None:
            pass

    monkeypatch.setattr(rich.live, "Live", Erased)
    out = Console(force_terminal=True, width=120, record=True)
    client = Client("http://zonecat.test", None, transport=httpx.MockTransport(FakeServer()))
    with pytest.raises(TaskTimeout):
        watch_task(client, "zon_1", "tsk_1", out=out, timeout=0.0, sleep=lambda _: None)
    text = out.export_text()
    assert "google" in text and "calendar" in text
