"""Crash resume (design §2, §6 durability): SIGKILL `zonecat serve` in the middle of a task, restart it on the
same data directory, and the task must finish exactly as if nothing had happened — every entity once, no
orphans, the events telling that the task was resumed.

Each test runs its own server (short lease, so the restarted one reclaims the task within seconds) and leaves
the session server alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server  # tests/e2e has no __init__.py: pytest puts it on sys.path

from tests.paging import all_items

# Each test kills the server once so many steps have ended, and needs the task still running when the SIGKILL
# lands. Steps are fast (a 500-entity delete can take 60 ms), faster than a poll and a kill on a loaded machine:
# ``wait_for`` therefore pauses the worker process (SIGSTOP) while it reads the events, and lets it run only in
# short slices between reads, so the task cannot finish between the read that saw the count and the kill.
LEASE_ENV = {"ZONECAT_LEASE_SECONDS": "2", "ZONECAT_HEARTBEAT_SECONDS": "0.5", "ZONECAT_POLL_SECONDS": "0.2"}


@pytest.fixture
def crash_server(tmp_path: Path) -> Iterator[Server]:
    data_dir = tmp_path / "zonecat-crash"
    data_dir.mkdir()
    instance = Server(data_dir, env=LEASE_ENV)
    instance.start()
    yield instance
    instance.kill()
    assert_store_consistent(instance)


def assert_store_consistent(server: Server) -> None:
    """`zonecat check` over the server's database finds nothing once every task has ended."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("zonecat")), "check"],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "no violations"


def chain_manifest(name: str, count: int, fail_at: int | None = None) -> dict[str, Any]:
    """``count`` secrets e0000 → e0001 → …: each binds the id of the one before, so the order matters.
    ``fail_at``: that entity's bindings fail at runtime (a missing input), which passes every release check."""
    entities: dict[str, Any] = {}
    for i in range(count):
        prev = f"entities.e{i - 1:04d}.outputs.id" if i else '"root"'
        label = "entities.inputs.no_such_input" if i == fail_at else f'"secret {i}"'
        entities[f"e{i:04d}"] = {
            "type": "secret",
            "bindings": f'{{"identifier": "chain-{i:04d}", "name": {label}, '
            f'"data": {{"type": "token", "token": "t{i}"}}, "metadata": {{"prev": {prev}}}}}',
        }
    last = f"e{count - 1:04d}"
    return {
        "kind": "custom",
        "name": name,
        "entities": entities,
        "outputs": {
            "schema": {"type": "object", "properties": {"last": {"type": "string"}}},
            "bindings": f'{{"last": entities.{last}.outputs.id}}',
        },
    }


def release(http: httpx.Client, zone: str, manifest: dict[str, Any]) -> str:
    created = http.post(f"/zones/{zone}/packages", json={"manifest": manifest})
    assert created.status_code == 201, created.text
    package_id = str(created.json()["id"])
    released = http.post(f"/zones/{zone}/packages/{package_id}/versions", json={})
    assert released.status_code == 201, released.text
    return package_id


class EventReader:
    """Reads a task's events incrementally (the events endpoint pages by sequence number)."""

    def __init__(self, zone: str, task_id: str) -> None:
        self.zone = zone
        self.task_id = task_id
        self.events: list[dict[str, Any]] = []

    def refresh(self, http: httpx.Client) -> list[dict[str, Any]]:
        while True:
            after = self.events[-1]["seq"] if self.events else 0
            response = http.get(
                f"/zones/{self.zone}/catalog_tasks/{self.task_id}/events", params={"after_seq": after, "limit": 1000}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            self.events.extend(body["items"])
            if not body["pagination"]["after_cursor"]:
                return self.events

    def count(self, action: str) -> int:
        return sum(1 for e in self.events if e["kind"] == "step_done" and e["action"] == action)


def wait_for(server: Server, reader: EventReader, action: str, at_least: int, timeout: float = 30.0) -> int:
    """Poll the events until ``at_least`` steps ended with ``action``, then return with the server's worker process
    paused (SIGSTOP), so the task is still running when the caller kills the server (a SIGKILL ends a stopped
    process too). Between polls the worker runs for ``SLICE_SECONDS`` only. Fails if the task finished first."""
    workers = server.children()
    assert workers, "the server has no worker process to pause"
    deadline = time.monotonic() + timeout
    with server.client() as http:
        while time.monotonic() < deadline:
            _signal_all(workers, signal.SIGSTOP)
            reader.refresh(http)
            done = reader.count(action)
            finished = [e for e in reader.events if e["kind"] == "status" and e["status"] in ("completed", "failed")]
            assert not finished, f"the task finished before {at_least} steps were {action}: too fast to interrupt"
            if done >= at_least:
                return done
            _signal_all(workers, signal.SIGCONT)
            time.sleep(SLICE_SECONDS)
    _signal_all(workers, signal.SIGCONT)
    raise AssertionError(f"fewer than {at_least} steps {action} within {timeout}s")


SLICE_SECONDS = 0.005


def _signal_all(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        os.kill(pid, signum)


def all_entities(http: httpx.Client, zone: str, **params: str) -> list[dict[str, Any]]:
    return all_items(http, f"/zones/{zone}/entities", {"limit": "100", **params})


def resumed(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["message"]
        for e in events
        if e["kind"] == "status" and e["status"] == "running" and "resumed" in (e["message"] or "")
    ]


def kill_and_restart(server: Server) -> None:
    server.kill()
    server.start()


def test_create_and_delete_of_500_entities_resume_after_sigkill(crash_server: Server) -> None:
    count = 500
    zone = crash_server.new_zone()
    with crash_server.client() as http:
        package_id = release(http, zone, chain_manifest("Crash Chain", count))
        accepted = http.post(
            f"/zones/{zone}/installs",
            json={"package_id": package_id},
            headers={"X-Client-Request-ID": str(uuid.uuid4())},
        )
        assert accepted.status_code == 202, accepted.text
        task_id, install_id = accepted.json()["id"], accepted.json()["install_id"]

    reader = EventReader(zone, task_id)
    before_kill = wait_for(crash_server, reader, "created", 50)
    kill_and_restart(crash_server)
    final = crash_server.wait_task(zone, task_id, timeout=90)
    assert final["status"] == "completed", final.get("error_message")

    with crash_server.client() as http:
        events = EventReader(zone, task_id).refresh(http)
        install = http.get(f"/zones/{zone}/installs/{install_id}").json()
        mine = all_entities(http, zone, install_id=install_id)
        everything = all_entities(http, zone)
    assert install["status"] == "active"
    assert len(resumed(events)) == 1, [e for e in events if e["kind"] == "status"]
    # Every local name was created exactly once, across both runs.
    created = [e["local_name"] for e in events if e["kind"] == "step_done"]
    assert len(created) == count and len(set(created)) == count
    assert {e["action"] for e in events if e["kind"] == "step_done"} == {"created"}
    assert before_kill < count

    # Every entity exists exactly once, and nothing else exists in the zone (no orphan of a lost step).
    assert len(mine) == count
    assert sorted(e["identifier"] for e in mine) == [f"chain-{i:04d}" for i in range(count)]
    assert sorted(e["id"] for e in everything) == sorted(e["id"] for e in mine)
    assert all(e["managed"] and e["created_by_install_id"] == install_id for e in mine)
    # The chain was resolved against the surviving entities: each one points at its predecessor.
    by_identifier = {e["identifier"]: e for e in mine}
    for i in range(1, count):
        previous = by_identifier[f"chain-{i - 1:04d}"]["id"]
        assert by_identifier[f"chain-{i:04d}"]["attributes"]["metadata"]["prev"] == previous
    assert install["outputs"] == {"last": by_identifier[f"chain-{count - 1:04d}"]["id"]}
    assert len(install["links"]) == count

    # Uninstall, killed once more halfway.
    with crash_server.client() as http:
        deleting = http.delete(f"/zones/{zone}/installs/{install_id}")
        assert deleting.status_code == 202, deleting.text
        delete_id = deleting.json()["id"]
        assert deleting.json()["warnings"] == []
    delete_reader = EventReader(zone, delete_id)
    wait_for(crash_server, delete_reader, "deleted", 50)
    kill_and_restart(crash_server)
    final_delete = crash_server.wait_task(zone, delete_id, timeout=90)
    assert final_delete["status"] == "completed", final_delete.get("error_message")

    with crash_server.client() as http:
        events = EventReader(zone, delete_id).refresh(http)
        assert http.get(f"/zones/{zone}/installs/{install_id}").json()["status"] == "deleted"
        assert all_entities(http, zone) == []
    assert len(resumed(events)) == 1
    deleted = [e["local_name"] for e in events if e["kind"] == "step_done"]
    assert len(deleted) == count and len(set(deleted)) == count
    assert {e["action"] for e in events if e["kind"] == "step_done"} == {"deleted"}


def test_kill_during_rollback_ends_failed_with_nothing_left(crash_server: Server) -> None:
    count, fail_at = 1000, 990
    zone = crash_server.new_zone()
    with crash_server.client() as http:
        # An unmanaged secret the package adopts on the way: the rollback must leave it alone.
        mine = http.post(f"/zones/{zone}/secrets", json={"identifier": "chain-0100", "name": "ours"})
        assert mine.status_code == 201, mine.text
        package_id = release(http, zone, chain_manifest("Crash Rollback", count, fail_at=fail_at))
        accepted = http.post(f"/zones/{zone}/installs", json={"package_id": package_id})
        assert accepted.status_code == 202, accepted.text
        task_id, install_id = accepted.json()["id"], accepted.json()["install_id"]

    reader = EventReader(zone, task_id)
    wait_for(crash_server, reader, "rolled_back", 20)
    kill_and_restart(crash_server)
    final = crash_server.wait_task(zone, task_id, timeout=60)

    assert final["status"] == "failed"
    assert f"'e{fail_at:04d}'" in final["error_message"] and "no_such_input" in final["error_message"]
    with crash_server.client() as http:
        events = EventReader(zone, task_id).refresh(http)
        assert http.get(f"/zones/{zone}/installs/{install_id}").json()["status"] == "failed"
        remaining = all_entities(http, zone)
    assert [(e["identifier"], e["managed"], e["used_by"]) for e in remaining] == [("chain-0100", False, [])]
    assert len(resumed(events)) == 1
    steps = [(e["local_name"], e["action"]) for e in events if e["kind"] == "step_done"]
    forward = [name for name, action in steps if action in ("created", "adopted")]
    backward = [name for name, action in steps if action in ("rolled_back", "released")]
    assert forward == [f"e{i:04d}" for i in range(fail_at)]
    assert backward == forward[::-1]  # every step undone once, in reverse order, across the crash
    assert ("e0100", "adopted") in steps and ("e0100", "released") in steps
    assert [e["local_name"] for e in events if e["kind"] == "step_failed"] == [f"e{fail_at:04d}"]


def test_kill_before_a_failure_resumes_then_rolls_back(crash_server: Server) -> None:
    count, fail_at = 1000, 990
    zone = crash_server.new_zone()
    with crash_server.client() as http:
        package_id = release(http, zone, chain_manifest("Crash Late Failure", count, fail_at=fail_at))
        accepted = http.post(f"/zones/{zone}/installs", json={"package_id": package_id})
        task_id, install_id = accepted.json()["id"], accepted.json()["install_id"]

    wait_for(crash_server, EventReader(zone, task_id), "created", 30)
    kill_and_restart(crash_server)
    final = crash_server.wait_task(zone, task_id, timeout=60)
    assert final["status"] == "failed" and f"'e{fail_at:04d}'" in final["error_message"]
    with crash_server.client() as http:
        events = EventReader(zone, task_id).refresh(http)
        assert http.get(f"/zones/{zone}/installs/{install_id}").json()["status"] == "failed"
        assert all_entities(http, zone) == []
    assert len(resumed(events)) == 1
    steps = [(e["local_name"], e["action"]) for e in events if e["kind"] == "step_done"]
    assert sorted(name for name, action in steps if action == "created") == [f"e{i:04d}" for i in range(fail_at)]
    assert sorted(name for name, action in steps if action == "rolled_back") == [f"e{i:04d}" for i in range(fail_at)]


def test_a_resumed_task_survives_a_second_kill(crash_server: Server) -> None:
    count = 1000
    zone = crash_server.new_zone()
    with crash_server.client() as http:
        package_id = release(http, zone, chain_manifest("Crash Twice", count))
        accepted = http.post(f"/zones/{zone}/installs", json={"package_id": package_id})
        task_id, install_id = accepted.json()["id"], accepted.json()["install_id"]

    reader = EventReader(zone, task_id)
    wait_for(crash_server, reader, "created", 30)
    kill_and_restart(crash_server)
    wait_for(crash_server, reader, "created", 150)
    kill_and_restart(crash_server)
    final = crash_server.wait_task(zone, task_id, timeout=60)
    assert final["status"] == "completed", final.get("error_message")

    with crash_server.client() as http:
        events = EventReader(zone, task_id).refresh(http)
        mine = all_entities(http, zone, install_id=install_id)
        assert len(all_entities(http, zone)) == count
    assert len(resumed(events)) == 2
    created = [e["local_name"] for e in events if e["kind"] == "step_done"]
    assert sorted(created) == [f"e{i:04d}" for i in range(count)]
    assert sorted(e["identifier"] for e in mine) == [f"chain-{i:04d}" for i in range(count)]


def test_graceful_stop_hands_the_task_back_at_once(tmp_path: Path) -> None:
    # A lease far longer than the test: the restarted server can only pick the task up quickly if the stopped
    # one gave its lease back.
    data_dir = tmp_path / "zonecat-graceful"
    data_dir.mkdir()
    server = Server(data_dir, env={**LEASE_ENV, "ZONECAT_LEASE_SECONDS": "120"})
    server.start()
    try:
        # Enough entities that the steps left after the 30th cannot all run before the SIGTERM lands (at ~1.5 ms
        # an entity, 200 could, on a loaded machine, and the task then completed instead of being handed back).
        count = 1000
        zone = server.new_zone()
        with server.client() as http:
            package_id = release(http, zone, chain_manifest("Graceful", count))
            accepted = http.post(f"/zones/{zone}/installs", json={"package_id": package_id})
            task_id = accepted.json()["id"]
        wait_for(server, EventReader(zone, task_id), "created", 30)
        _signal_all(server.children(), signal.SIGCONT)  # a paused worker could not answer the SIGTERM
        server.stop()  # SIGTERM: the worker finishes its current step and releases the task
        server.start()
        reader = EventReader(zone, task_id)
        deadline = time.monotonic() + 5
        with server.client() as http:
            while not resumed(reader.refresh(http)):
                finished = [e for e in reader.events if e["kind"] == "status" and e["status"] == "completed"]
                assert not finished, "the task completed before the SIGTERM: too fast to interrupt"
                assert time.monotonic() < deadline, "the task was not handed back: it waits for its lease to expire"
                time.sleep(0.05)
        final = server.wait_task(zone, task_id, timeout=30)
        assert final["status"] == "completed", final.get("error_message")
        with server.client() as http:
            events = EventReader(zone, task_id).refresh(http)
            assert len(all_entities(http, zone)) == count
        running = [e["message"] for e in events if e["kind"] == "status" and e["status"] == "running"]
        assert len(running) == 2 and "released" in running[1], running
        created = [e["local_name"] for e in events if e["kind"] == "step_done"]
        assert sorted(created) == [f"e{i:04d}" for i in range(count)]
    finally:
        server.kill()
    assert_store_consistent(server)
