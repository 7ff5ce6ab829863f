"""End-to-end fixtures: a real `zonecat serve` subprocess on a free port, driven over HTTP.

The session ``server`` runs once on SQLite (its own data directory) and once on PostgreSQL (a database of the
test cluster, set up with `zonecat migrate` first, as design §7 requires); tests that take it run against both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.pg import PostgresServer

ADMIN_TOKEN = "zc_e2e_admin_token"
ZONECAT = str(Path(sys.executable).with_name("zonecat"))
BACKENDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A `zonecat serve` process that tests may kill (SIGKILL) and restart on the same data directory.

    With ``database_url`` (``ZONECAT_DATABASE_URL``) it serves that database instead of the SQLite file in the
    data directory; such a database must be migrated first (``migrate()``).
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.args = args
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ADMIN_TOKEN
        self.log_path = data_dir / "server.log"
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "ZONECAT_DATA_DIR": str(self.data_dir),
                "ZONECAT_BOOTSTRAP_TOKEN": self.token,
                "ZONECAT_PORT": str(self.port),
                "ZONECAT_HOST": "127.0.0.1",
                "ZONECAT_RATE_LIMIT": "0",
                # Never inherited from the caller's environment: without a URL the server is on SQLite.
                "ZONECAT_DATABASE_URL": self.database_url or "",
            }
        )
        env.update(self.extra_env)
        return env

    def migrate(self) -> str:
        """Run `zonecat migrate` on the server's database; returns its output."""
        result = subprocess.run(
            [ZONECAT, "migrate"], env=self.env(), capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"zonecat migrate exited with {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start `zonecat serve` (a subclass may start it otherwise)."""
        return subprocess.Popen([ZONECAT, "serve", *self.args], env=self.env(), stdout=log, stderr=log)

    def start(self, timeout: float = 90.0) -> None:
        log = self.log_path.open("ab")
        self.process = self.spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"zonecat serve exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"zonecat serve did not answer within {timeout}s; see {self.log_path}")

    def children(self) -> list[int]:
        """The pids of the server's child processes (its worker process)."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid:
                found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind happens in the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def new_zone(self) -> str:
        with self.client() as http:
            response = http.post("/zones", json={"name": f"e2e-{uuid.uuid4().hex[:12]}"})
            response.raise_for_status()
            return str(response.json()["id"])

    def wait_task(self, zone_id: str, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while time.monotonic() < deadline:
                body = http.get(f"/zones/{zone_id}/catalog_tasks/{task_id}", params={"redirect": "false"}).json()
                if body["status"] in ("completed", "failed"):
                    return dict(body)
                time.sleep(0.05)
        raise AssertionError(f"task {task_id} did not finish within {timeout}s")


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("zonecat-e2e"))
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Iterator[Server]:
    """`zonecat serve` on an empty PostgreSQL database, after `zonecat migrate`."""
    name = postgres_server.create_database(postgres_server.new_name("e2e"))
    instance = Server(tmp_path_factory.mktemp("zonecat-e2e-pg"), database_url=postgres_server.dsn(name))
    try:
        instance.migrate()
        instance.start()
        yield instance
    finally:
        instance.stop()
        postgres_server.drop_database(name)


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Server:
    """The session server of each backend in ``BACKENDS``."""
    instance: Server = request.getfixturevalue(f"{request.param}_server")
    return instance


@pytest.fixture
def zone(server: Server) -> str:
    return server.new_zone()
