"""In-process API fixtures: the real app, a real database (SQLite and PostgreSQL), a real worker thread."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET_BOX
from tests.pg import DatabasePool, PostgresServer
from zonecat.api.app import create_app
from zonecat.api.context import AppContext, RateLimiter
from zonecat.engine.bootstrap import ORGANIZATION_ID, ensure_admin_token
from zonecat.engine.packages import load_global_catalog
from zonecat.settings import Settings
from zonecat.store.database import Database
from zonecat.store.schema import metadata
from zonecat.worker.worker import Worker

ADMIN_TOKEN = "zc_test_admin_token"
BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Api:
    """A TestClient bound to the admin token, plus helpers that tests share."""

    client: TestClient
    db: Database
    worker: Worker

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def get(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.auth)
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.auth)
        return self.client.post(path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.auth)
        return self.client.put(path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.auth)
        return self.client.patch(path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.auth)
        return self.client.delete(path, **kwargs)

    def new_zone(self, name: str | None = None) -> str:
        response = self.post("/zones", json={"name": name or f"zone-{time.monotonic_ns()}"})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def wait_task(self, zone_id: str, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """Poll until the task is completed or failed; returns its final body."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.get(f"/zones/{zone_id}/catalog_tasks/{task_id}?redirect=false").json()
            if body["status"] in ("completed", "failed"):
                return dict(body)
            time.sleep(0.02)
        raise AssertionError(f"task {task_id} did not finish within {timeout}s")

    def install(self, zone_id: str, package: str, inputs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Install and wait; returns the final task."""
        body = {"package_id": package, "inputs": inputs or {}, **extra}
        response = self.post(f"/zones/{zone_id}/installs", json=body)
        assert response.status_code == 202, response.text
        return self.wait_task(zone_id, response.json()["id"])


def _seed(db: Database) -> None:
    """What every API test starts with: the admin token and the shipped global catalog."""
    ensure_admin_token(db, ADMIN_TOKEN)
    load_global_catalog(db, ORGANIZATION_ID, None)


@pytest.fixture(scope="session")
def api_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, seeded SQLite file, made once per session; each test gets a copy."""
    path = tmp_path_factory.mktemp("api-template") / "zonecat.db"
    db = Database(f"sqlite:///{path}", secret_box=TEST_SECRET_BOX)
    try:
        db.migrate()
        _seed(db)
    finally:
        db.dispose()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def api_postgres_databases(postgres_server: PostgresServer, postgres_template: str) -> DatabasePool:
    """Copies of a migrated, seeded PostgreSQL database."""
    name = postgres_server.create_database("zonecat_api_template", template=postgres_template)
    db = Database(postgres_server.url(name), secret_box=TEST_SECRET_BOX)
    try:
        _seed(db)
    finally:
        db.dispose()
    return DatabasePool(postgres_server, name, [t.name for t in reversed(metadata.sorted_tables)])


@contextlib.contextmanager
def fresh_database(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh migrated and seeded database of ``backend``, for the requesting test only."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("api_sqlite_template")
        for suffix in ("", "-wal"):  # nobody has the template open: the file (and a WAL, if one is left) is all of it
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", tmp_path / f"zonecat.db{suffix}")
        yield f"sqlite:///{tmp_path / 'zonecat.db'}"
        return
    if backend != "postgresql":
        raise AssertionError(f"unknown backend {backend}")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    pool: DatabasePool = request.getfixturevalue("api_postgres_databases")
    name = pool.acquire()
    try:
        yield server.url(name)
    finally:
        pool.release(name)


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[Api]:
    """The app and a worker thread on a fresh database of each backend in ``BACKENDS``."""
    with fresh_database(request, request.param, tmp_path) as url:
        if request.param != "sqlite":
            settings = settings.with_changes(database_url=url)
        db = Database(url, secret_box=TEST_SECRET_BOX)
        try:
            worker = Worker(db, settings, name="test-worker")
            thread = threading.Thread(target=worker.run, daemon=True)
            thread.start()
            try:
                ctx = AppContext(db=db, settings=settings, limiter=RateLimiter(0, 1), wake_worker=worker.wake)
                with TestClient(create_app(ctx), base_url="http://testserver") as client:
                    yield Api(client, db, worker)
            finally:
                worker.stop()
                thread.join(timeout=10)
        finally:
            db.dispose()
