"""PostgreSQL restarts under load: the API answers 503 with Retry-After while the database is away, workers
reconnect, and every task still ends completed or failed correctly."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_scale_out import Cluster, all_entities, client, wait_all
from tests.pg import PostgresServer


class RestartablePostgres(PostgresServer):
    """A cluster of its own (the session's shared one must not go down under other tests)."""

    def restart(self, down_seconds: float) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run([pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"], "pg_ctl stop")
        time.sleep(down_seconds)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run([pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"], "pg_ctl start")
        self._wait_ready()


@pytest.fixture
def own_postgres() -> Iterator[RestartablePostgres]:
    server = RestartablePostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_database_restart_under_load(own_postgres: RestartablePostgres, tmp_path: Path) -> None:
    name = own_postgres.create_database()
    cluster = Cluster(own_postgres.url(name), tmp_path)
    try:
        cluster.migrate()
        url = cluster.start_api()
        cluster.start_worker()
        cluster.start_worker()
        with client(url) as http:
            zone = http.post("/zones", json={"name": f"restart-{uuid.uuid4().hex[:8]}"}).json()["id"]
        task_ids: list[str] = []
        statuses_while_down: list[int] = []
        retry_after: list[str | None] = []
        stop = threading.Event()

        def load() -> None:
            index = 0
            with client(url) as http:
                while not stop.is_set():
                    index += 1
                    body = {"package_id": "github-api", "inputs": {"client_id": f"c{index}", "client_secret": "s"}}
                    try:
                        response = http.post(f"/zones/{zone}/installs", json=body)
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 202:
                        task_ids.append(response.json()["id"])
                    else:
                        statuses_while_down.append(response.status_code)
                        retry_after.append(response.headers.get("retry-after"))
                        assert response.json()["code"] == "service_unavailable"
                    time.sleep(0.05)

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(2)
        own_postgres.restart(down_seconds=3)
        time.sleep(2)
        stop.set()
        loader.join()
        assert statuses_while_down, "no request reached the API while the database was down"
        assert set(statuses_while_down) == {503}
        assert all(value is not None and int(value) >= 1 for value in retry_after)
        finals = wait_all(url, zone, task_ids, timeout=180)
        assert {t["status"] for t in finals} == {"completed"}, [t.get("error_message") for t in finals][:3]
        with client(url) as http:
            # Every install of the same package shares its provider and its resource.
            assert sorted(e["identifier"] for e in all_entities(http, zone)) == [
                "https://api.github.com",
                "https://github.com",
            ]
        cluster.check()
    finally:
        cluster.stop()
