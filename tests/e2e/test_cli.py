"""The ``zonecat`` CLI against a live ``zonecat serve`` (fixtures ``server`` and ``zone`` from conftest.py)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.e2e.conftest import Server
from zonecat.cli.main import main

# Slugs are derived from the manifests' names ("Google Calendar API").
CALENDAR, DRIVE, LINEAR, GITHUB = "google-calendar-api", "google-drive-api", "linear-api", "github-api"
GOOGLE_INPUTS = ["--input", "client_id=1234567890", "--input", "client_secret=s3cret"]

CUSTOM_MANIFEST = """\
kind: custom
name: CLI Test {suffix}
description: {description}
inputs:
  schema:
    type: object
    required: [label]
    properties: {{label: {{type: string, minLength: 1}}}}
  bindings: '{{"label": pkg.inputs.label}}'
entities:
  vault:
    type: secret
    bindings: '{{"identifier": "cli-test-{suffix}", "name": entities.inputs.label,
      "data": {{"type": "token", "token": "t0k"}}}}'
  app:
    type: application
    bindings: '{{"identifier": "https://app-{suffix}.example", "name": entities.inputs.label,
      "metadata": {{"docs_url": entities.vault.href}}}}'
outputs:
  schema: {{type: object, properties: {{app_id: {{type: string}}}}}}
  bindings: '{{"app_id": entities.app.outputs.id}}'
"""


def cli(server: Any, *args: str, code: int | None = 0, token: str | None = None) -> Result:
    """Run ``zonecat --url … --token … ARGS`` in process; check the exit code unless ``code`` is None."""
    runner = CliRunner(env={"ZONECAT_ZONE": None, "ZONECAT_URL": None, "ZONECAT_TOKEN": None})
    result = runner.invoke(main, ["--url", server.url, "--token", token or server.token, *args])
    if code is not None:
        assert result.exit_code == code, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


def cli_json(server: Any, *args: str, token: str | None = None) -> Any:
    return json.loads(cli(server, *args, "--json", token=token).stdout)


def install(server: Any, zone: str, package: str, *extra: str) -> dict[str, Any]:
    """Install and wait; the install's JSON (with its outputs)."""
    body: dict[str, Any] = cli_json(server, "install", package, "--zone", zone, *GOOGLE_INPUTS, *extra, "--wait")
    assert body["status"] == "active", body
    return body


def test_zone_create_and_list(server: Any) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    created = cli_json(server, "zone", "create", name, "--description", "made by the CLI test")
    assert created["id"].startswith("zon_") and created["name"] == name
    listed = cli_json(server, "zone", "list")
    assert created["id"] in [z["id"] for z in listed["items"]]
    assert set(listed["pagination"]) >= {"after_cursor", "before_cursor"}
    # A zone name works wherever a zone id does.
    assert cli_json(server, "package", "list", "--zone", name)["items"]
    assert name in cli(server, "zone", "list").stdout


def test_package_list_and_show(server: Any, zone: str) -> None:
    slugs = {p["slug"] for p in cli_json(server, "package", "list", "--zone", zone)["items"]}
    assert {CALENDAR, DRIVE, LINEAR, GITHUB} <= slugs
    pkg = cli_json(server, "package", "show", CALENDAR, "--zone", zone)
    assert pkg["slug"] == CALENDAR and pkg["source"]["scope"] == "global"
    text = cli(server, "package", "show", CALENDAR, "--zone", zone).stdout
    assert "client_id*" in text and "resource_id" in text
    assert len(cli_json(server, "package", "list", "--zone", zone, "--limit", "2")["items"]) == 2


def test_install_wait_shows_the_steps_and_outputs(server: Any, zone: str) -> None:
    result = cli(
        server,
        "install",
        CALENDAR,
        "--zone",
        zone,
        *GOOGLE_INPUTS,
        "--input",
        'scopes=["https://www.googleapis.com/auth/calendar.readonly"]',
        "--wait",
    )
    out = result.stdout
    assert "google (provider): created" in out and "calendar (resource): created" in out
    assert "outputs" in out and "resource_id" in out and "provider_id" in out
    installs = cli_json(server, "install", "list", "--zone", zone)["items"]
    assert [(i["package_slug"], i["status"]) for i in installs] == [(CALENDAR, "active")]
    shown = cli_json(server, "install", "show", installs[0]["id"], "--zone", zone)
    assert shown["outputs"]["resource_id"] and "client_secret" not in (shown.get("inputs") or {})
    resources = cli_json(server, "entity", "list", "--zone", zone, "--type", "resource")["items"]
    assert [r["identifier"] for r in resources] == ["https://www.googleapis.com/calendar/v3"]
    assert resources[0]["id"] == shown["outputs"]["resource_id"]


def test_install_inputs_file(server: Any, zone: str, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("client_id: from-file\nclient_secret: s\nscopes: [read, write]\n")
    body = cli_json(server, "install", LINEAR, "--zone", zone, "--inputs-file", str(inputs), "--wait")
    assert body["status"] == "active"
    assert body["inputs"]["client_id"] == "from-file" and body["inputs"]["scopes"] == ["read", "write"]


def test_graph_in_every_format(server: Any, zone: str) -> None:
    install_id = install(server, zone, CALENDAR)["id"]
    graph = cli_json(server, "graph", install_id, "--zone", zone)
    assert {n["local_name"] for n in graph["nodes"]} == {"google", "calendar"}
    assert {(e["from"], e["to"]) for e in graph["edges"]} == {("calendar", "google")}

    dot = cli(server, "graph", install_id, "--zone", zone, "--format", "dot").stdout
    assert dot.startswith(f'digraph "{install_id}" {{') and '"calendar" -> "google"' in dot

    mermaid = cli(server, "graph", install_id, "--zone", zone, "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR\n") and "n_calendar -->|" in mermaid

    tree = cli(server, "graph", install_id, "--zone", zone).stdout
    assert install_id in tree and tree.index("google") < tree.index("calendar") and "created" in tree


def test_uninstall_warns_about_a_shared_provider(server: Any, zone: str) -> None:
    calendar = install(server, zone, CALENDAR)
    drive = install(server, zone, DRIVE)
    assert calendar["outputs"]["provider_id"] == drive["outputs"]["provider_id"]

    result = cli(server, "uninstall", calendar["id"], "--zone", zone, "--wait")
    out = result.stdout
    assert "warning" in out and "entities.google" in out and drive["id"] in out
    assert "calendar (resource): deleted" in out and "google (provider): preserved" in out, out

    tasks = cli_json(server, "task", "list", "--zone", zone, "--install", calendar["id"], "--operation", "delete")
    task = tasks["items"][0]
    assert task["status"] == "completed"
    assert {(link["properties"]["local_name"], link["rel"]) for link in task["links"]} == {
        ("calendar", "deleted"),
        ("google", "preserved"),
    }
    [warning] = task["warnings"]
    assert warning["code"] == "conflict" and warning["details"][0]["field"] == "entities.google"
    # The provider survives, still used by drive.
    providers = cli_json(server, "entity", "list", "--zone", zone, "--type", "provider")["items"]
    assert [p["id"] for p in providers] == [drive["outputs"]["provider_id"]]

    # The last user going removes it; uninstall --json returns the delete task.
    started = cli_json(server, "uninstall", drive["id"], "--zone", zone)
    assert started["operation"] == "delete" and not started.get("warnings")
    cli(server, "task", "watch", started["id"], "--zone", zone)
    assert cli_json(server, "entity", "list", "--zone", zone)["items"] == []


def test_task_show_and_watch(server: Any, zone: str) -> None:
    started = cli_json(server, "install", GITHUB, "--zone", zone, *GOOGLE_INPUTS)
    assert started["operation"] == "create" and started["status"] in ("pending", "running", "completed")
    watched = cli(server, "task", "watch", started["id"], "--zone", zone).stdout
    assert "outputs" in watched
    shown = cli_json(server, "task", "show", started["id"], "--zone", zone)
    assert shown["id"] == started["id"] and shown["status"] == "completed"
    assert shown["install_id"] == started["install_id"] and shown["links"]
    text = cli(server, "task", "show", started["id"], "--zone", zone).stdout
    assert "completed" in text and "created" in text


def test_token_create_and_list(server: Any, zone: str) -> None:
    name = f"ro-{uuid.uuid4().hex[:6]}"
    created = cli_json(server, "token", "create", "--name", name, "--zone", zone, "--read-only")
    assert created["token"] and created["read_only"] is True and created["zones"] == [zone]
    listed = cli_json(server, "token", "list")["items"]
    mine = [t for t in listed if t["id"] == created["id"]]
    assert mine and "token" not in mine[0]

    # The new token reads its zone but may not write.
    assert cli_json(server, "package", "list", "--zone", zone, token=created["token"])["items"]
    denied = cli(server, "install", LINEAR, "--zone", zone, *GOOGLE_INPUTS, token=created["token"], code=1)
    assert "forbidden:" in denied.output

    result = cli(server, "token", "create", "--name", f"{name}-2")
    assert "shown only this once" in result.stderr
    secret = result.stdout.strip()
    assert cli_json(server, "zone", "list", token=secret)["items"]


def test_package_push_and_release(server: Any, zone: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:6]
    path = tmp_path / "pkg.yaml"
    path.write_text(CUSTOM_MANIFEST.format(suffix=suffix, description="first"))
    slug = f"cli-test-{suffix}"

    local = cli_json(server, "package", "show", str(path))
    assert local["slug"] == slug
    assert [(e["local_name"], e["type"], e["depends_on"]) for e in local["entities"]] == [
        ("vault", "secret", []),
        ("app", "application", ["vault"]),
    ]
    assert "vault" in cli(server, "package", "show", str(path)).stdout

    pushed = cli_json(server, "package", "push", str(path), "--zone", zone)
    assert pushed["package"]["slug"] == slug and pushed["draft"]["manifest_sha"]

    path.write_text(CUSTOM_MANIFEST.format(suffix=suffix, description="second"))
    again = cli(server, "package", "push", str(path), "--zone", zone)
    assert "updated the draft" in again.output

    version = cli_json(server, "package", "release", slug, "--zone", zone)
    assert version["version"] == 1 and version["owner_type"] == "customer"
    pkg = cli_json(server, "package", "show", slug, "--zone", zone)
    assert pkg["current_version"]["version"] == 1 and pkg["description"] == "second"

    path.write_text(CUSTOM_MANIFEST.format(suffix=suffix, description="third"))
    released = cli_json(server, "package", "push", str(path), "--zone", zone, "--release")
    assert released["version"]["version"] == 2

    body = cli_json(server, "install", slug, "--zone", zone, "--input", "label=hello", "--wait")
    assert body["status"] == "active" and body["outputs"]["app_id"]


def test_errors_are_shown_with_code_and_details(server: Any, zone: str) -> None:
    missing = cli(server, "install", "no-such-package", "--zone", zone, *GOOGLE_INPUTS, code=1)
    assert "not_found:" in missing.output

    invalid = cli(server, "install", CALENDAR, "--zone", zone, code=1)
    assert "validation_error:" in invalid.output and "inputs.client_id" in invalid.output

    unknown_zone = cli(server, "install", LINEAR, "--zone", "zon_00000000000000000000000", code=1)
    assert "not_found:" in unknown_zone.output

    bad_token = cli(server, "zone", "list", token="not-a-token", code=1)
    assert "unauthorized:" in bad_token.output


def test_connection_refused_names_the_url() -> None:
    class Nowhere:
        url = "http://127.0.0.1:9"
        token = "x"

    result = cli(Nowhere(), "zone", "list", code=1)
    assert "http://127.0.0.1:9" in result.output


@pytest.mark.parametrize("command", [["zone", "list"], ["token", "list"]])
def test_read_commands_print_tables(server: Any, command: list[str]) -> None:
    assert "┃" in cli(server, *command).stdout


def test_check_finds_a_zone_by_name_and_refuses_one_that_does_not_exist(tmp_path: Path) -> None:
    server = Server(tmp_path)
    server.start()
    try:
        with server.client() as http:
            zone = http.post("/zones", json={"name": "checked"}).json()["id"]
            http.post("/zones", json={"name": "other"}).raise_for_status()
        install(server, zone, CALENDAR)
    finally:
        server.stop()
    with contextlib.closing(sqlite3.connect(tmp_path / "zonecat.db")) as db, db:
        db.execute("DELETE FROM entity_uses WHERE zone_id = ?", (zone,))  # the install's entities now orphans
    runner = CliRunner(env=server.env())
    for ref in ("checked", zone):
        found = runner.invoke(main, ["check", "--zone", ref])
        assert found.exit_code == 1, found.output
        assert "orphan" in found.stdout
    assert runner.invoke(main, ["check", "--zone", "other"]).stdout.strip() == "no violations"
    unknown = runner.invoke(main, ["check", "--zone", "no-such-zone"])
    assert unknown.exit_code == 2
    assert "no zone has the id or name 'no-such-zone'" in unknown.output
