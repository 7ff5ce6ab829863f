"""Fixtures shared by every test layer.

Database-backed suites run against every backend in ``BACKENDS``. PostgreSQL is a real server started by the test
session itself (``tests/pg.py``): one throwaway cluster per xdist worker, started on first use and stopped at the
end. Each test gets its own database, cloned from a template that was migrated once. When the server cannot start
the tests that need it fail with the reason; they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import DatabasePool, PostgresServer
from zonecat.settings import Settings
from zonecat.store.database import Database
from zonecat.store.schema import metadata
from zonecat.store.secrets import SecretBox

TEMPLATE_DATABASE = "zonecat_template"
# The secret key of every in-process database of the tests (urlsafe base64 of 32 bytes, like ZONECAT_SECRET_KEY).
TEST_SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LW9mLXplcm9jYXQtdGVzdHM="
TEST_SECRET_BOX = SecretBox.from_text(TEST_SECRET_KEY)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        secret_key=TEST_SECRET_KEY,
        rate_limit_per_second=0,
        lease_seconds=5,
        heartbeat_seconds=1,
        poll_seconds=0.2,
    )


@pytest.fixture
def sqlite_db(settings: Settings) -> Iterator[Database]:
    db = Database(settings.effective_database_url, secret_box=TEST_SECRET_BOX)
    db.migrate()
    yield db
    db.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """This worker's PostgreSQL cluster (raises with the server log if it cannot start)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of the cluster's maintenance database (``postgres``)."""
    return postgres_server.url()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """A database migrated to head once per session; every test database is a copy of it."""
    name = postgres_server.create_database(TEMPLATE_DATABASE)
    db = Database(postgres_server.url(name))
    try:
        db.migrate()
    finally:
        db.dispose()  # CREATE DATABASE … TEMPLATE needs the template to have no connections
    return name


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: PostgresServer, postgres_template: str) -> DatabasePool:
    return DatabasePool(postgres_server, postgres_template, [t.name for t in reversed(metadata.sorted_tables)])


@pytest.fixture
def postgres_database_url(postgres_server: PostgresServer, postgres_databases: DatabasePool) -> Iterator[str]:
    """A fresh, migrated database for this test only. Dispose of every engine on it before the test ends."""
    name = postgres_databases.acquire()
    yield postgres_server.url(name)
    postgres_databases.release(name)
