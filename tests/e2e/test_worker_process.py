"""`zonecat serve` runs tasks in a worker process of its own: it is restarted when it dies, it dies with its
parent, and `--in-process-worker` keeps the one-process layout."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from conftest import Server  # tests/e2e has no __init__.py: pytest puts it on sys.path
from test_crash import LEASE_ENV, EventReader, assert_store_consistent, chain_manifest, release, wait_for


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def worker_pid(server: Server, timeout: float = 10.0) -> int:
    assert server.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = children_of(server.process.pid)
        if children:
            assert len(children) == 1, children
            return children[0]
        time.sleep(0.05)
    raise AssertionError("serve has no worker process")


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return True
        if stat.rsplit(b")", 1)[1].split()[0] == b"Z":
            return True
        time.sleep(0.05)
    return False


def install(server: Server, zone: str, package_id: str) -> str:
    with server.client() as http:
        response = http.post(f"/zones/{zone}/installs", json={"package_id": package_id})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])


def test_a_killed_worker_process_is_restarted_and_its_task_resumed(tmp_path: Path) -> None:
    server = Server(tmp_path, env=LEASE_ENV)
    server.start()
    try:
        zone = server.new_zone()
        with server.client() as http:
            package_id = release(http, zone, chain_manifest("restart-chain", 1000))
        first = worker_pid(server)
        assert Path(f"/proc/{first}/comm").read_text().strip() == "zonecat-worker"
        task_id = install(server, zone, package_id)
        reader = EventReader(zone, task_id)
        wait_for(server, reader, "created", 10)
        os.kill(first, signal.SIGKILL)
        assert gone(first)
        second = worker_pid(server)
        assert second != first
        # The first was forked by serve at its start; a restart is a new interpreter (serve runs threads by now).
        assert b"worker" in Path(f"/proc/{second}/cmdline").read_bytes().split(b"\0")
        task = server.wait_task(zone, task_id, timeout=120)
        assert task["status"] == "completed", task
        with server.client() as http:
            reader.refresh(http)
        assert any("resumed" in (e["message"] or "") for e in reader.events if e["kind"] == "status")
        assert reader.count("created") == 1000  # every entity exactly once, across both processes
        # and the restarted worker takes new work as usual
        assert server.wait_task(zone, install(server, zone, release_small(server, zone)))["status"] == "completed"
    finally:
        server.stop()
    assert_store_consistent(server)


def release_small(server: Server, zone: str) -> str:
    with server.client() as http:
        return release(http, zone, chain_manifest("small-chain", 2))


def test_the_worker_process_dies_with_a_killed_serve(tmp_path: Path) -> None:
    server = Server(tmp_path, env=LEASE_ENV)
    server.start()
    child = worker_pid(server)
    server.kill()
    assert gone(child), "the worker process outlived its serve"
    server.start()  # and the next serve on the same data directory works
    try:
        zone = server.new_zone()
        assert server.wait_task(zone, install(server, zone, release_small(server, zone)))["status"] == "completed"
    finally:
        server.stop()
    assert_store_consistent(server)


def test_sigterm_stops_the_worker_process_too(tmp_path: Path) -> None:
    server = Server(tmp_path, env=LEASE_ENV)
    server.start()
    child = worker_pid(server)
    server.stop()
    assert server.process is not None and server.process.returncode is not None
    assert gone(child, timeout=1.0)


def test_in_process_worker_runs_tasks_without_a_child(tmp_path: Path) -> None:
    server = Server(tmp_path, args=("--in-process-worker",))
    server.start()
    try:
        assert server.process is not None and children_of(server.process.pid) == []
        zone = server.new_zone()
        assert server.wait_task(zone, install(server, zone, release_small(server, zone)))["status"] == "completed"
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
