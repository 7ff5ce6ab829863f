"""The store suite runs unchanged against every database backend listed in ``BACKENDS``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zonecat.store.database import Database

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    else:  # pragma: no cover - further backends are added here
        raise AssertionError(f"unknown backend {request.param}")
    database.migrate()
    yield database
    database.dispose()
