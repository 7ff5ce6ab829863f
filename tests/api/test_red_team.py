"""Red-team findings: odd-but-legal and illegal uses that once went wrong, each pinned by a regression test."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    DRIVE,
    LINEAR,
    assert_error,
    bearer,
    make_token,
    pause_worker,
    run_due_tasks,
    start_delete,
    start_install,
)
from zonecat.clock import now_ms
from zonecat.engine.bootstrap import expire_dead_local_leases
from zonecat.store import tasks as task_store


def _entities(api: Api, zone: str) -> list[dict[str, Any]]:
    response = api.get(f"/zones/{zone}/entities?limit=100")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


# -- a zone-scoped token never learns about other zones, writes included ------------------------------------


WRITES_ON_A_ZONE = [
    ("post", "/zones/{zone}/installs", {"package_id": LINEAR, "inputs": CREDS}),
    ("delete", "/zones/{zone}/installs/ins_x", None),
    ("post", "/zones/{zone}/providers", {"identifier": "https://p.example.com", "name": "P"}),
    ("patch", "/zones/{zone}/providers/ent_x", {"name": "P"}),
    ("delete", "/zones/{zone}/providers/ent_x", None),
    ("post", "/zones/{zone}/packages", {"manifest": {}}),
    ("delete", "/zones/{zone}/packages/pkg_x", None),
    ("put", "/zones/{zone}/packages/pkg_x/draft", {"manifest": {}}),
    ("post", "/zones/{zone}/packages/pkg_x/versions", {}),
    ("post", "/zones/{zone}/packages/pkg_x/versions/1/archive", None),
    ("patch", "/zones/{zone}", {"description": "x"}),
    ("delete", "/zones/{zone}", None),
]


@pytest.mark.parametrize(("method", "template", "body"), WRITES_ON_A_ZONE)
def test_read_only_zone_token_gets_404_for_writes_to_other_zones(
    api: Api, method: str, template: str, body: dict[str, Any] | None
) -> None:
    """A read-only token limited to zone A writing to zone B: 404 (B does not exist for it), not 403."""
    mine, other = api.new_zone(), api.new_zone()
    token = make_token(api, "ro", zones=[mine], read_only=True)["token"]
    kwargs: dict[str, Any] = {"headers": bearer(token)}
    if body is not None:
        kwargs["json"] = body
    path = template.format(zone=other)
    assert_error(getattr(api.client, method)(path, **kwargs), 404, "not_found", path)
    # In its own zone the same write is refused for being read-only.
    own = template.format(zone=mine)
    assert_error(getattr(api.client, method)(own, **kwargs), 403, "forbidden", own)


def test_read_write_zone_token_gets_404_before_body_checks_in_other_zones(api: Api) -> None:
    """A malformed body sent to a zone the token cannot see is still a 404: the zone is checked first."""
    mine, other = api.new_zone(), api.new_zone()
    token = make_token(api, "rw", zones=[mine])["token"]
    headers = {**bearer(token), "Content-Type": "application/json"}
    path = f"/zones/{other}/installs"
    assert_error(api.client.post(path, content=b"{not json", headers=headers), 404, "not_found", path)


# -- delete warnings when the other user of a shared entity is being deleted too ---------------------------


def test_no_preserved_warning_when_the_other_user_is_already_being_deleted(api: Api) -> None:
    zone = api.new_zone()
    calendar = api.install(zone, CALENDAR, CREDS)
    drive = api.install(zone, DRIVE, CREDS)
    assert calendar["status"] == drive["status"] == "completed"
    pause_worker(api)
    first = start_delete(api, zone, calendar["install_id"])
    assert first.status_code == 202
    # Calendar's delete is planned while Drive is active: the shared provider stays for Drive.
    assert [w["details"][0]["field"] for w in first.json()["warnings"]] == ["entities.google"]
    second = start_delete(api, zone, drive["install_id"])
    assert second.status_code == 202
    # Drive is the provider's last user that is not leaving: its delete removes the provider, so no warning.
    assert second.json()["warnings"] == []
    assert run_due_tasks(api) == 2
    assert _entities(api, zone) == []
    final = api.wait_task(zone, second.json()["id"])
    assert {link["rel"] for link in final["links"]} == {"deleted"}


def test_repeated_install_of_one_package_shares_and_warns_right(api: Api) -> None:
    """A second install of the same package into one zone shares every entity of the first."""
    zone = api.new_zone()
    first = api.install(zone, LINEAR, CREDS)
    second = api.install(zone, LINEAR, CREDS)
    assert first["status"] == second["status"] == "completed"
    assert {link["rel"] for link in second["links"]} == {"shared"}
    assert len(_entities(api, zone)) == 2
    response = start_install(api, zone, LINEAR, CREDS)  # a third, to delete while the others stay
    third = api.wait_task(zone, response.json()["id"])
    accepted = start_delete(api, zone, first["install_id"]).json()
    assert len(accepted["warnings"]) == 2
    assert all(
        second["install_id"] in w["message"] or third["install_id"] in w["message"] for w in accepted["warnings"]
    )
    api.wait_task(zone, accepted["id"])
    assert len(_entities(api, zone)) == 2
    for task in (second, third):
        done = api.wait_task(zone, start_delete(api, zone, task["install_id"]).json()["id"])
        assert done["status"] == "completed"
    assert _entities(api, zone) == []


# -- kill -9 then restart: the dead worker's lease does not hold the task for a whole lease ----------------


def _claim_as(api: Api, worker_id: str) -> str:
    with api.db.write() as conn:
        row = task_store.claim(conn, worker_id, now_ms(), 3_600_000)
    assert row is not None
    return str(row["id"])


def test_start_up_expires_leases_of_dead_workers_of_this_host(api: Api) -> None:
    zone = api.new_zone()
    pause_worker(api)
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        owners = [f"{host}:{dead.pid}:1", f"{host}:{alive.pid}:1", f"elsewhere:{dead.pid}:1", "test-worker"]
        claimed = {}
        for owner in owners:
            accepted = start_install(api, zone, LINEAR, CREDS)
            assert accepted.status_code == 202
            claimed[owner] = _claim_as(api, owner)
        assert run_due_tasks(api) == 0  # every lease is an hour long
        assert expire_dead_local_leases(api.db) == [claimed[owners[0]]]
        assert expire_dead_local_leases(api.db) == []
        assert run_due_tasks(api) == 1
        assert api.wait_task(zone, claimed[owners[0]])["status"] == "completed"
        for owner in owners[1:]:
            body = api.get(f"/zones/{zone}/catalog_tasks/{claimed[owner]}?redirect=false").json()
            assert body["status"] == "running", owner
    finally:
        alive.kill()
        alive.wait()


def test_start_up_expires_a_lease_under_the_pid_of_a_process_that_has_not_run_a_worker_yet(api: Api) -> None:
    """serve forks its worker process before it boots; in a restarted container it may get the pid the previous
    run's worker had, and the lease under that pid is the dead worker's, though the pid is alive."""
    zone = api.new_zone()
    pause_worker(api)
    waiting = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        owner = f"{socket.gethostname()}:{waiting.pid}:1"
        assert start_install(api, zone, LINEAR, CREDS).status_code == 202
        task_id = _claim_as(api, owner)
        assert expire_dead_local_leases(api.db) == []  # alive, and not said to be idle
        assert expire_dead_local_leases(api.db, [waiting.pid]) == [task_id]
        assert run_due_tasks(api) == 1
        assert api.wait_task(zone, task_id)["status"] == "completed"
    finally:
        waiting.kill()
        waiting.wait()
