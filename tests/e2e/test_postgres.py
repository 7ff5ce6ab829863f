"""`zonecat serve`, `worker` and `migrate` on PostgreSQL (design §7): migrating is explicit there, and a server
refuses a schema that is behind instead of changing it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import ZONECAT, Server
from tests.pg import PostgresServer


def run(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a zonecat command with the server's environment; a command that does not exit fails the test."""
    return subprocess.run([ZONECAT, *args], env=server.env(), capture_output=True, text=True, timeout=60, check=False)


def test_serve_and_worker_refuse_an_unmigrated_database_until_migrate_ran(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    name = postgres_server.create_database()
    server = Server(tmp_path, database_url=postgres_server.dsn(name))
    try:
        for command in (["serve"], ["worker"]):
            refused = run(server, *command)
            assert refused.returncode != 0, refused.stdout + refused.stderr
            assert "zonecat migrate" in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr, refused.stderr
        migrated = run(server, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert "empty ->" in migrated.stdout
        again = run(server, "migrate")  # idempotent
        assert again.returncode == 0, again.stderr
        server.start()
        with server.client() as http:
            assert http.get("/readyz").status_code == 200
            assert http.get("/zones").status_code == 200
        assert not (tmp_path / "zonecat.db").exists()  # it really served PostgreSQL, not the SQLite default
    finally:
        server.stop()
        postgres_server.drop_database(name)
