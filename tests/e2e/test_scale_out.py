"""Scale-out on PostgreSQL: two API processes and three worker processes on one database.

200 installs are submitted concurrently through both APIs while one worker is killed with SIGKILL; every task
must end completed, no task may run on two workers at once, every entity must exist exactly once, and
uninstalling everything must leave no managed entity. `zonecat check` closes each scenario.
"""

from __future__ import annotations

import concurrent.futures
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

from tests.e2e.conftest import free_port
from tests.paging import all_items
from tests.pg import PostgresServer

ZONECAT = str(Path(sys.executable).with_name("zonecat"))
TOKEN = "zc_scale_out_token"


class Cluster:
    """API and worker processes of one zonecat deployment on one PostgreSQL database."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.env = dict(os.environ)
        self.env.update(
            {
                "ZONECAT_DATABASE_URL": database_url,
                "ZONECAT_DATA_DIR": str(log_dir / "data"),
                # Every process of a deployment must share the key of the write-only values.
                "ZONECAT_SECRET_KEY": "c2NhbGUtb3V0LXRlc3Qta2V5LTMyLWJ5dGVzLWxvbmc=",
                "ZONECAT_BOOTSTRAP_TOKEN": TOKEN,
                "ZONECAT_RATE_LIMIT": "0",
                "ZONECAT_LEASE_SECONDS": "2",
                "ZONECAT_HEARTBEAT_SECONDS": "0.5",
                "ZONECAT_LOG_LEVEL": "WARNING",
            }
        )
        self.log_dir = log_dir
        self.apis: list[tuple[subprocess.Popen[bytes], str]] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, args: list[str], name: str, **extra: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        return subprocess.Popen([ZONECAT, *args], env={**self.env, **extra}, stdout=log, stderr=log)

    def migrate(self) -> None:
        subprocess.run([ZONECAT, "migrate"], env=self.env, check=True, capture_output=True, timeout=120)

    def start_api(self) -> str:
        port = free_port()
        process = self._spawn(["serve", "--no-worker"], f"api-{port}", ZONECAT_PORT=str(port))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert process.poll() is None, f"API process exited; see {self.log_dir}"
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    self.apis.append((process, url))
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("API process did not become ready")

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start a worker process and wait until it runs (it logs 'worker started' once connected)."""
        name = f"worker-{len(self.workers)}"
        process = self._spawn(["worker", "--concurrency", "2"], name, ZONECAT_LOG_LEVEL="INFO")
        self.workers.append(process)
        log = self.log_dir / f"{name}.log"
        deadline = time.monotonic() + 90
        while b"worker started" not in log.read_bytes():
            assert process.poll() is None, f"worker exited: {log.read_text(errors='replace')[-2000:]}"
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.1)
        return process

    def stop(self) -> None:
        for process in [p for p, _ in self.apis] + self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in [p for p, _ in self.apis] + self.workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    def check(self) -> None:
        result = subprocess.run([ZONECAT, "check"], env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def cluster(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Cluster]:
    name = postgres_server.create_database()
    instance = Cluster(postgres_server.url(name), tmp_path)
    try:
        yield instance
    finally:
        instance.stop()
        postgres_server.drop_database(name)


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)


def wait_all(url: str, zone: str, task_ids: list[str], timeout: float = 240) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    finished: dict[str, dict[str, Any]] = {}
    with client(url) as http:
        while len(finished) < len(task_ids):
            assert time.monotonic() < deadline, f"{len(task_ids) - len(finished)} tasks never finished"
            for task_id in task_ids:
                if task_id in finished:
                    continue
                body = http.get(f"/zones/{zone}/catalog_tasks/{task_id}", params={"redirect": "false"}).json()
                if body["status"] in ("completed", "failed"):
                    finished[task_id] = body
            time.sleep(0.2)
    return [finished[task_id] for task_id in task_ids]


def events(http: httpx.Client, zone: str, task_id: str) -> list[dict[str, Any]]:
    return all_items(http, f"/zones/{zone}/catalog_tasks/{task_id}/events")


def all_entities(http: httpx.Client, zone: str) -> list[dict[str, Any]]:
    return all_items(http, f"/zones/{zone}/entities", {"limit": "100"})


def shared_manifest(index: int) -> dict[str, Any]:
    """Ten packages over one shared provider: every install shares it, each adds its own resource."""
    return {
        "kind": "custom",
        "name": f"Scale {index} {uuid.uuid4().hex[:6]}",
        "inputs": {"schema": {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}},
        "entities": {
            "idp": {"type": "provider", "bindings": '{"identifier": "https://idp.scale.test", "name": "IdP"}'},
            "api": {
                "type": "resource",
                "bindings": (
                    '{"identifier": "https://api.scale.test/" + entities.inputs.run, "name": "API",'
                    ' "credential_provider_id": entities.idp.outputs.id}'
                ),
            },
        },
    }


def test_two_apis_three_workers_200_installs_one_worker_killed(cluster: Cluster) -> None:
    cluster.migrate()
    urls = [cluster.start_api(), cluster.start_api()]
    for _ in range(3):
        cluster.start_worker()
    with client(urls[0]) as http:
        zone = http.post("/zones", json={"name": f"scale-{uuid.uuid4().hex[:8]}"}).json()["id"]
        packages = []
        for index in range(10):
            created = http.post(f"/zones/{zone}/packages", json={"manifest": shared_manifest(index)}).json()
            http.post(f"/zones/{zone}/packages/{created['id']}/versions", json={}).raise_for_status()
            packages.append(created["id"])

    def submit(index: int) -> str:
        with client(urls[index % 2]) as http:
            body = {"package_id": packages[index % 10], "inputs": {"run": f"r{index}"}}
            response = http.post(f"/zones/{zone}/installs", json=body, headers={"Idempotency-Key": f"scale-{index}"})
            response.raise_for_status()
            return str(response.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(submit, index) for index in range(200)]
        time.sleep(0.5)
        cluster.workers[0].send_signal(signal.SIGKILL)  # mid-run: its tasks resume elsewhere after the lease
        task_ids = [future.result() for future in futures]
    finals = wait_all(urls[1], zone, task_ids)
    assert [t["status"] for t in finals] == ["completed"] * 200, [t.get("error_message") for t in finals][:5]

    with client(urls[0]) as http:
        entities = all_entities(http, zone)
        keys = [(e["type"], e["identifier"]) for e in entities]
        assert len(keys) == len(set(keys)) == 201  # one shared provider + 200 resources
        provider = next(e for e in entities if e["type"] == "provider")
        assert len(provider["used_by"]) == 200
        for task_id in task_ids:
            steps = [e["local_name"] for e in events(http, zone, task_id) if e["kind"] == "step_done"]
            assert sorted(steps) == ["api", "idp"], steps  # each step done exactly once: nothing ran twice
        installs = [t["install_id"] for t in finals]
    cluster.check()

    def uninstall(index: int) -> str:
        with client(urls[index % 2]) as http:
            response = http.delete(f"/zones/{zone}/installs/{installs[index]}")
            response.raise_for_status()
            return str(response.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        delete_ids = list(pool.map(uninstall, range(200)))
    assert [t["status"] for t in wait_all(urls[0], zone, delete_ids)] == ["completed"] * 200
    with client(urls[1]) as http:
        assert all_entities(http, zone) == []
    cluster.check()


def chain_manifest(count: int) -> dict[str, Any]:
    entities: dict[str, Any] = {}
    for index in range(count):
        after = f', "metadata": {{"after": entities.e{index - 1}.outputs.id}}' if index else ""
        entities[f"e{index}"] = {
            "type": "secret",
            "bindings": f'{{"identifier": "chain-{index}", "name": "secret {index}"{after}}}',
        }
    return {"kind": "custom", "name": f"Chain {uuid.uuid4().hex[:6]}", "entities": entities}


def test_sigterm_finishes_the_step_hands_the_task_back_and_another_worker_resumes(cluster: Cluster) -> None:
    cluster.migrate()
    url = cluster.start_api()
    first = cluster.start_worker()
    with client(url) as http:
        zone = http.post("/zones", json={"name": f"sigterm-{uuid.uuid4().hex[:8]}"}).json()["id"]
        created = http.post(f"/zones/{zone}/packages", json={"manifest": chain_manifest(1000)}).json()
        http.post(f"/zones/{zone}/packages/{created['id']}/versions", json={}).raise_for_status()
        task_id = http.post(f"/zones/{zone}/installs", json={"package_id": created["id"]}).json()["id"]
        deadline = time.monotonic() + 60
        while sum(e["kind"] == "step_done" for e in events(http, zone, task_id)) < 20:
            assert time.monotonic() < deadline, "the install never started"
            time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0  # it finished its current step and exited on its own
    with client(url) as http:
        released = [e for e in events(http, zone, task_id) if e["kind"] == "step_done"]
        assert 20 <= len(released) < 1000, "the worker kept going after SIGTERM"
    cluster.start_worker()  # resumes at once: the lease was handed back, not left to expire
    (final,) = wait_all(url, zone, [task_id], timeout=120)
    assert final["status"] == "completed", final.get("error_message")
    with client(url) as http:
        running = [
            e["message"] for e in events(http, zone, task_id) if e["kind"] == "status" and e["status"] == "running"
        ]
        assert len(running) == 2 and "released" in running[1], running
        steps = [e["local_name"] for e in events(http, zone, task_id) if e["kind"] == "step_done"]
        assert sorted(steps) == sorted(f"e{i}" for i in range(1000))
    cluster.check()
