"""`zonecat serve` runs tasks in a worker process of its own: it is restarted when it dies, it dies with its
parent, and `--in-process-worker` keeps the one-process layout."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx
from conftest import ZONECAT, Server  # tests/e2e has no __init__.py: pytest puts it on sys.path
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


def install_chain(server: Server, name: str, count: int) -> tuple[str, str]:
    """A new zone, a released chain of ``count`` secrets in it, and its install: (zone, task id)."""
    zone = server.new_zone()
    with server.client() as http:
        package_id = release(http, zone, chain_manifest(name, count))
    return zone, install(server, zone, package_id)


def test_a_killed_worker_process_is_restarted_and_its_task_resumed(tmp_path: Path) -> None:
    server = Server(tmp_path, env=LEASE_ENV)
    server.start()
    try:
        first = worker_pid(server)
        assert Path(f"/proc/{first}/comm").read_text().strip() == "zonecat-worker"
        zone, task_id = install_chain(server, "restart-chain", 1000)
        reader = EventReader(zone, task_id)
        wait_for(server, reader, "created", 10)
        os.kill(first, signal.SIGKILL)
        assert gone(first)
        second = worker_pid(server)
        assert second != first
        assert "worker process killed by SIGKILL; restarting it" in server.log_path.read_text()  # a crash, an error
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


class ContainerServer(Server):
    """serve as PID 1 of a pid namespace of its own, as in a container: each start numbers its processes afresh,
    so a restarted serve's forked worker process gets the pid its predecessor's worker had."""

    def spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        # As root (CI) a pid namespace needs no user namespace, which some sandboxes refuse even to root.
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        command = ["unshare", *user, "--pid", "--fork", "--mount-proc", ZONECAT, "serve"]
        return subprocess.Popen(command, env=self.env(), stdout=log, stderr=log, start_new_session=True)

    def kill(self) -> None:
        """The whole container at once."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def _lease(data_dir: Path, task_id: str) -> tuple[str, str | None]:
    with sqlite3.connect(data_dir / "zonecat.db") as db:
        row = db.execute("SELECT status, locked_by FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return str(row[0]), row[1]


def test_a_restarted_container_resumes_the_task_of_its_dead_worker_at_once(tmp_path: Path) -> None:
    # A lease far longer than the test: only its expiry at start-up can let the task resume in time.
    lease = {"ZONECAT_LEASE_SECONDS": "300", "ZONECAT_HEARTBEAT_SECONDS": "1"}
    server = ContainerServer(tmp_path, env=lease)
    server.start()
    try:
        zone, task_id = install_chain(server, "container-chain", 3000)
        deadline = time.monotonic() + 30
        while _lease(tmp_path, task_id)[1] is None:
            assert time.monotonic() < deadline, "the task was never claimed"
            time.sleep(0.01)
    finally:
        server.kill()
    status, owner = _lease(tmp_path, task_id)
    assert status == "running" and owner is not None
    server.start()
    try:
        children = children_of(server.process.pid)  # unshare's child: serve, PID 1 inside
        assert len(children) == 1
        worker = worker_pid_inside(children[0])
        assert owner.split(":")[1] == str(worker), (owner, worker)  # the very pid of the dead worker
        task = server.wait_task(zone, task_id, timeout=120)
        assert task["status"] == "completed", task
    finally:
        server.stop()


def worker_pid_inside(serve_pid: int, timeout: float = 10.0) -> int:
    """The pid, inside its namespace, of the worker process of the serve process ``serve_pid`` (outside)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children_of(serve_pid):
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
        time.sleep(0.05)
    raise AssertionError("serve has no worker process")
