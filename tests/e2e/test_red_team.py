"""Red-team findings that need a live `zonecat serve`: restart after SIGKILL, logs, the SDK and the CLI."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ZONECAT, Server  # tests/e2e has no __init__.py: pytest puts it on sys.path
from keycardai_api import KeycardAPI, NotFoundError, PermissionDeniedError
from test_crash import EventReader, all_entities, assert_store_consistent, chain_manifest, release, wait_for

# A lease far longer than any test: a task held by a dead worker could only resume through the start-up check.
LONG_LEASE_ENV = {"ZONECAT_LEASE_SECONDS": "3600", "ZONECAT_POLL_SECONDS": "0.2"}


@pytest.fixture
def long_lease_server(tmp_path: Path) -> Iterator[Server]:
    data_dir = tmp_path / "zonecat-long-lease"
    data_dir.mkdir()
    instance = Server(data_dir, env=LONG_LEASE_ENV)
    instance.start()
    yield instance
    instance.kill()
    assert_store_consistent(instance)


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env(), "ZONECAT_URL": server.url, "ZONECAT_TOKEN": server.token}
    return subprocess.run([ZONECAT, *args], env=env, capture_output=True, text=True, timeout=120)


def test_restart_after_sigkill_resumes_the_interrupted_task_without_waiting_for_its_lease(
    long_lease_server: Server,
) -> None:
    """`make run`, kill -9 mid-install, `make run` again: the task resumes at once, not after the lease."""
    server = long_lease_server
    count = 300
    zone = server.new_zone()
    with server.client() as http:
        package_id = release(http, zone, chain_manifest("Restart Chain", count))
        accepted = http.post(f"/zones/{zone}/installs", json={"package_id": package_id})
        assert accepted.status_code == 202, accepted.text
        task = accepted.json()
    reader = EventReader(zone, task["id"])
    wait_for(server, reader, "created", 20)
    server.kill()
    server.start()
    final = server.wait_task(zone, task["id"])
    assert final["status"] == "completed", final
    with server.client() as http:
        entities = all_entities(http, zone)
    assert len(entities) == count
    assert len({e["identifier"] for e in entities}) == count
    shown = cli(server, "install", "show", task["install_id"], "--zone", zone, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "active"


def test_logs_never_contain_a_secret_input(server: Server, zone: str) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    client = KeycardAPI(base_url=server.url, default_headers={"Authorization": f"Bearer {server.token}"})
    inputs = {"client_id": "cid", "client_secret": secret}
    created = client.zones.installs.create(zone, package_id="google-calendar-api", inputs=inputs)
    assert server.wait_task(zone, created.id)["status"] == "completed"
    # A rejected install (wrong type next to the secret) and a failing one log their errors, never the value.
    rejected = cli(
        server, "install", "github-api", "--zone", zone, "--input", "client_id=", "--input", f"client_secret={secret}"
    )
    assert rejected.returncode == 1
    assert secret not in rejected.stderr + rejected.stdout
    deleted = client.zones.installs.delete(created.install_id, zone_id=zone)
    assert server.wait_task(zone, deleted.id)["status"] == "completed"
    log = server.log_path.read_text()
    assert created.install_id in log  # the log does describe these requests and tasks
    assert secret not in log


def test_zone_scoped_read_only_token_through_the_sdk(server: Server) -> None:
    mine, other = server.new_zone(), server.new_zone()
    with server.client() as http:
        made = http.post("/tokens", json={"name": "ro", "zones": [mine], "read_only": True})
        assert made.status_code == 201, made.text
    client = KeycardAPI(base_url=server.url, default_headers={"Authorization": f"Bearer {made.json()['token']}"})
    assert client.zones.packages.list(mine).items
    with pytest.raises(PermissionDeniedError) as own:
        client.zones.installs.create(mine, package_id="linear-api", inputs={"client_id": "a", "client_secret": "b"})
    assert own.value.body["code"] == "forbidden"  # type: ignore[index]
    for call in (
        lambda: client.zones.packages.list(other),
        lambda: client.zones.installs.create(other, package_id="linear-api"),
        lambda: client.zones.installs.delete("ins_x", zone_id=other),
    ):
        with pytest.raises(NotFoundError) as hidden:
            call()
        assert hidden.value.body["code"] == "not_found"  # type: ignore[index]
