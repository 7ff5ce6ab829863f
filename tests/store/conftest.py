"""The store suite runs unchanged against every database backend listed in ``BACKENDS``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import backend_url
from zonecat.store.database import Database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    database = Database(backend_url(request, request.param, tmp_path))
    database.migrate()
    yield database
    database.dispose()
