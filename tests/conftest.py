"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zonecat.settings import Settings
from zonecat.store.database import Database


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, rate_limit_per_second=0, lease_seconds=5, heartbeat_seconds=1, poll_seconds=0.2)


@pytest.fixture
def sqlite_db(settings: Settings) -> Iterator[Database]:
    db = Database(settings.effective_database_url)
    db.migrate()
    yield db
    db.dispose()
