"""In-process API fixtures: the real app, a real SQLite database, a real worker thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from zonecat.api.app import create_app
from zonecat.api.context import AppContext, RateLimiter
from zonecat.engine.bootstrap import ORGANIZATION_ID, ensure_admin_token
from zonecat.engine.packages import load_global_catalog
from zonecat.settings import Settings
from zonecat.store.database import Database
from zonecat.worker.worker import Worker

ADMIN_TOKEN = "zc_test_admin_token"


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


@pytest.fixture
def api(settings: Settings, sqlite_db: Database) -> Iterator[Api]:
    ensure_admin_token(sqlite_db, ADMIN_TOKEN)
    load_global_catalog(sqlite_db, ORGANIZATION_ID, None)
    worker = Worker(sqlite_db, settings, name="test-worker")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    ctx = AppContext(db=sqlite_db, settings=settings, limiter=RateLimiter(0, 1), wake_worker=worker.wake)
    with TestClient(create_app(ctx), base_url="http://testserver") as client:
        yield Api(client, sqlite_db, worker)
    worker.stop()
    thread.join(timeout=10)
