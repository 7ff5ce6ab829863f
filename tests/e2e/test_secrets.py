"""Write-only values never leave zonecat and are encrypted at rest (a live ``zonecat serve``).

A walkthrough like the README's runs with distinctive secret values: client secrets as install inputs (through the
API and through the CLI), a provider and a secret created through their typed collections, a zone package with a
write-only input nested in an object, failed validations that involve secrets, uninstalls, a restart. Every
response (status line, headers, body), every task's events, the CLI's output and the server's log are then
searched for the secret values, and so are the bytes of the database (SQLite file and WAL; on PostgreSQL every row
of every table), where only ciphertext may be.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import ZONECAT, Server
from tests.pg import PostgresServer

MARK = uuid.uuid4().hex[:10]
SECRETS = {
    "calendar input": f"CalSecret-{MARK}-A1",
    "drive input (CLI)": f"DriveSecret-{MARK}-B2",
    "provider": f"ProvSecret-{MARK}-C3",
    "provider patch": f"ProvRotated-{MARK}-D4",
    "secret token": f"DataToken-{MARK}-E5",
    "nested input": f"NestedPass-{MARK}-F6",
    "refused input": f"Refused-{MARK}-G7",
    "secret password": f"DataPass-{MARK}-H8",
}


def nested_manifest() -> dict[str, Any]:
    """A package whose write-only input is nested in an object and ends up in a secret's ``data``."""
    return {
        "kind": "custom",
        "name": f"Vault Login {MARK}",
        "inputs": {
            "schema": {
                "type": "object",
                "required": ["login"],
                "properties": {
                    "login": {
                        "type": "object",
                        "required": ["username", "password"],
                        "properties": {
                            "username": {"type": "string", "minLength": 1},
                            "password": {"type": "string", "minLength": 8, "writeOnly": True},
                        },
                    },
                },
            },
        },
        "entities": {
            "login": {
                "type": "secret",
                "bindings": (
                    '{"identifier": "vault-login-' + MARK + '", "name": "Vault login", '
                    '"data": {"type": "password", "username": entities.inputs.login.username, '
                    '"password": entities.inputs.login.password}}'
                ),
            },
        },
        "outputs": {
            "schema": {"type": "object", "properties": {"secret_id": {"type": "string"}}},
            "bindings": '{"secret_id": entities.login.outputs.id}',
        },
    }


class Recorder:
    """Every request made and every response received, as text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def response(self, response: httpx.Response) -> None:
        response.read()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.texts.append(f"{response.request.method} {response.request.url}\n{response.status_code}\n{headers}\n")
        self.texts.append(response.text)

    def add(self, text: str) -> None:
        self.texts.append(text)


class Walk:
    def __init__(self, server: Server, recorder: Recorder) -> None:
        self.server = server
        self.recorder = recorder
        self.http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=30,
            event_hooks={"response": [recorder.response]},
        )

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text}"
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return response.json() if response.content and is_json else None

    def wait(self, zone: str, task_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            response = self.http.get(f"/zones/{zone}/catalog_tasks/{task_id}")  # a 303 once completed
            if response.status_code == 303:
                self.http.get(response.headers["location"])
                return dict(self.call("GET", f"/zones/{zone}/catalog_tasks/{task_id}?redirect=false", 200))
            body = response.json()
            if body["status"] == "failed":
                return dict(body)
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} did not finish")

    def install(self, zone: str, package: str, inputs: dict[str, Any]) -> dict[str, Any]:
        task = self.call("POST", f"/zones/{zone}/installs", 202, json={"package_id": package, "inputs": inputs})
        return self.wait(zone, task["id"])

    def cli(self, *args: str) -> str:
        env = {**os.environ, "ZONECAT_URL": self.server.url, "ZONECAT_TOKEN": self.server.token}
        result = subprocess.run([ZONECAT, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
        self.recorder.add(result.stdout + result.stderr)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout


def walkthrough(server: Server, recorder: Recorder) -> None:
    walk = Walk(server, recorder)
    s = SECRETS
    zone = walk.call("POST", "/zones", 201, json={"name": f"secrets-{MARK}"})["id"]
    walk.call("GET", f"/zones/{zone}/packages", 200)

    # Google Calendar through the API, Google Drive through the CLI; both share one provider.
    calendar = walk.install(
        zone, "google-calendar-api", {"client_id": "cal.apps.example", "client_secret": s["calendar input"]}
    )
    assert calendar["status"] == "completed", calendar
    walk.cli(
        "install", "google-drive-api", "--zone", zone, "--input", "client_id=drive.apps.example",
        "--input", f"client_secret={s['drive input (CLI)']}", "--wait",
    )  # fmt: skip
    walk.cli("install", "list", "--zone", zone, "--json")
    walk.cli("entity", "list", "--zone", zone, "--json")

    # A provider and a secret created (and changed) through their typed collections.
    provider = walk.call(
        "POST",
        f"/zones/{zone}/providers",
        201,
        json={
            "identifier": f"https://idp-{MARK}.example",
            "name": "IdP",
            "client_id": "idp-client",
            "client_secret": s["provider"],
        },
    )
    assert provider["client_secret_set"] is True
    walk.call(
        "PATCH", f"/zones/{zone}/providers/{provider['id']}", 200,
        json={"client_secret": s["provider patch"]},
    )  # fmt: skip
    walk.call("PATCH", f"/zones/{zone}/providers/{provider['id']}", 200, json={"name": "IdP renamed"})
    assert walk.call("GET", f"/zones/{zone}/providers/{provider['id']}", 200)["client_secret_set"] is True
    secret = walk.call(
        "POST",
        f"/zones/{zone}/secrets",
        201,
        json={
            "identifier": f"token-{MARK}",
            "name": "Token",
            "data": {"type": "token", "token": s["secret token"]},
        },
    )
    walk.call(
        "PATCH", f"/zones/{zone}/secrets/{secret['id']}", 200,
        json={"data": {"type": "password", "username": "u", "password": s["secret password"]}},
    )  # fmt: skip
    # Refused requests that carry secrets: the errors name the rule, never the value.
    walk.call(
        "POST", f"/zones/{zone}/providers", 400,
        json={"identifier": "", "name": "x", "client_secret": s["provider"]},
    )  # fmt: skip
    walk.call(
        "POST", f"/zones/{zone}/secrets", 400,
        json={"identifier": "x", "name": "x", "data": {"type": s["secret token"]}},
    )  # fmt: skip

    # A zone package with a write-only input nested in an object.
    package = walk.call("POST", f"/zones/{zone}/packages", 201, json={"manifest": nested_manifest()})
    walk.call("POST", f"/zones/{zone}/packages/{package['id']}/versions", 201, json={})
    nested = walk.install(zone, package["id"], {"login": {"username": "bob", "password": s["nested input"]}})
    assert nested["status"] == "completed", nested
    walk.call(
        "POST", f"/zones/{zone}/installs", 400,
        json={"package_id": package["id"], "inputs": {"login": {"username": "bob", "password": "short"}}},
    )  # fmt: skip
    walk.call(
        "POST", f"/zones/{zone}/installs", 400,
        json={
            "package_id": package["id"],
            "inputs": {"login": {"username": 7, "password": s["refused input"]}},
        },
    )  # fmt: skip
    walk.call(
        "POST", f"/zones/{zone}/installs", 400,
        json={"package_id": "google-calendar-api", "inputs": {"client_secret": s["calendar input"]}},
    )  # fmt: skip

    # Read everything there is to read.
    installs = walk.call("GET", f"/zones/{zone}/installs", 200)["items"]
    assert len(installs) == 3
    for install in installs:
        walk.call("GET", f"/zones/{zone}/installs/{install['id']}", 200)
        walk.cli("graph", install["id"], "--zone", zone)
    entities = walk.call("GET", f"/zones/{zone}/entities?limit=100", 200)["items"]
    for entity in entities:
        walk.call("GET", f"/zones/{zone}/entities/{entity['id']}", 200)
    for collection in ("providers", "resources", "applications", "application-credentials", "secrets"):
        for item in walk.call("GET", f"/zones/{zone}/{collection}?limit=100", 200)["items"]:
            walk.call("GET", f"/zones/{zone}/{collection}/{item['id']}", 200)
    google = walk.call("GET", f"/zones/{zone}/entities?type=provider&identifier=https://accounts.google.com", 200)
    assert [p["attributes"].get("client_secret_set") for p in google["items"]] == [True], google

    # Uninstall everything, then read every task and its events.
    for install in installs:
        task = walk.call("DELETE", f"/zones/{zone}/installs/{install['id']}", 202)
        assert walk.wait(zone, task["id"])["status"] == "completed"
    for task in walk.call("GET", f"/zones/{zone}/catalog_tasks?limit=100", 200)["items"]:
        walk.call("GET", f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false", 200)
        walk.call("GET", f"/zones/{zone}/catalog_tasks/{task['id']}/events", 200)
    walk.cli("task", "list", "--zone", zone, "--json")
    walk.call("GET", "/metrics", 200)
    walk.call("GET", "/openapi.json", 200)
    walk.http.close()


def after_restart(server: Server, recorder: Recorder) -> None:
    """The key generated at first start is reused: the stored secrets still open after a restart."""
    walk = Walk(server, recorder)
    zones = walk.call("GET", "/zones?limit=100", 200)["items"]
    zone_id = next(z["id"] for z in zones if z["name"] == f"secrets-{MARK}")
    providers = walk.call("GET", f"/zones/{zone_id}/providers", 200)["items"]
    for provider in providers:
        # A PATCH re-validates the merged attributes, write-only ones included: they must decrypt.
        changed = walk.call("PATCH", f"/zones/{zone_id}/providers/{provider['id']}", 200, json={"name": "After"})
        assert changed["client_secret_set"] is True
    assert walk.install(
        zone_id, "google-calendar-api", {"client_id": "c", "client_secret": SECRETS["calendar input"]}
    )["status"] == "completed"  # fmt: skip
    walk.http.close()


def assert_no_secret(where: str, text: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"the {name} appears in {where}"


def assert_no_secret_bytes(where: str, data: bytes) -> None:
    for name, value in SECRETS.items():
        for encoded in (value.encode("utf-8"), value.encode("utf-16-le")):
            assert encoded not in data, f"the {name} is stored in plaintext in {where}"


def check_everything(server: Server, recorder: Recorder) -> None:
    assert len(recorder.texts) > 100
    assert any("drive.apps.example" in text for text in recorder.texts)  # the public inputs are shown
    for index, text in enumerate(recorder.texts):
        assert_no_secret(f"response or CLI output #{index}", text)
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert '"level": "info"' in log  # the log is there and has content
    assert_no_secret(f"the server log {server.log_path}", log)
    key_file = server.data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in log


@pytest.fixture
def sqlite_secrets_server(tmp_path: Path) -> Iterator[Server]:
    instance = Server(tmp_path / "data", env={"ZONECAT_LOG_LEVEL": "DEBUG"})
    instance.data_dir.mkdir()
    yield instance
    instance.stop()


def test_no_secret_leaves_sqlite_and_none_is_stored_in_plaintext(sqlite_secrets_server: Server) -> None:
    server, recorder = sqlite_secrets_server, Recorder()
    assert not (server.data_dir / "secret.key").exists()
    server.start()
    walkthrough(server, recorder)
    database = server.data_dir / "zonecat.db"
    files = [database, Path(f"{database}-wal")]
    for path in files:  # while the server runs: the WAL holds the recent pages
        if path.exists():
            assert_no_secret_bytes(str(path), path.read_bytes())
    server.stop()
    server.start()
    after_restart(server, recorder)
    server.stop()
    stored = b"".join(path.read_bytes() for path in files if path.exists())
    assert_no_secret_bytes("the database file and its WAL", stored)
    # The scan sees the stored data: the public attributes next to the secrets are there in plaintext.
    assert f"https://idp-{MARK}.example".encode() in stored
    check_everything(server, recorder)


def test_no_secret_leaves_postgresql_and_none_is_stored_in_plaintext(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    name = postgres_server.create_database(postgres_server.new_name("secrets"))
    server = Server(tmp_path / "data", env={"ZONECAT_LOG_LEVEL": "DEBUG"}, database_url=postgres_server.dsn(name))
    server.data_dir.mkdir()
    recorder = Recorder()
    try:
        server.migrate()
        server.start()
        walkthrough(server, recorder)
        server.stop()
        server.start()
        after_restart(server, recorder)
        server.stop()
        engine = sa.create_engine(postgres_server.url(name))
        try:
            with engine.connect() as conn:
                tables = (
                    conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
                )
                dump = "\n".join(
                    row
                    for table in tables
                    for row in conn.execute(sa.text(f'SELECT row_to_json(t)::text FROM "{table}" t')).scalars()
                )
        finally:
            engine.dispose()
        assert "entities" in tables
        assert_no_secret("the PostgreSQL tables", dump)
        assert '{"enc":"zcs1.' in dump.replace(" ", "")  # the write-only columns hold ciphertext
        check_everything(server, recorder)
    finally:
        server.stop()
        postgres_server.drop_database(name)
