"""How `zonecat serve` keeps its memory down: the worker process is forked once the worker's modules are imported
(it shares their memory with the API process instead of importing its own copy), and a fresh SQLite database is
migrated in a child process, so that Alembic never lives in the serving process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import Server  # tests/e2e has no __init__.py: pytest puts it on sys.path
from test_crash import LEASE_ENV
from test_worker_process import gone, install, release_small, worker_pid


def _rollup(pid: int) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        values[name] = int(value.split()[0])
    return values


def test_the_worker_process_is_forked_and_shares_the_modules_memory(tmp_path: Path) -> None:
    server = Server(tmp_path, env=LEASE_ENV)
    server.start()
    try:
        child = worker_pid(server)
        assert Path(f"/proc/{child}/comm").read_text().strip() == "zonecat-worker"
        assert server.process is not None
        # and `pkill -f "zonecat serve"` no longer matches it (serve stops it)
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().rstrip(b"\0")
        assert cmdline == f"zonecat worker --parent-pid {server.process.pid}".encode()
        zone = server.new_zone()
        assert server.wait_task(zone, install(server, zone, release_small(server, zone)))["status"] == "completed"
        # Pages written before the fork and not since are shared with the API process. A worker process started
        # as a new interpreter shares only the libraries' file pages (clean), never written (dirty) ones.
        assert _rollup(child)["Shared_Dirty"] > 4 * 1024, _rollup(child)
    finally:
        server.stop()
    assert gone(child, timeout=1.0)


def test_a_serve_that_cannot_boot_leaves_no_worker_process_behind(tmp_path: Path) -> None:
    server = Server(
        tmp_path,
        env={"ZONECAT_DATABASE_WAIT_SECONDS": "0"},
        database_url="postgresql+psycopg://zonecat@127.0.0.1:1/nowhere",
    )
    result = subprocess.run(
        [sys.executable, "-m", "zonecat", "serve"], env=server.env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "cannot connect to the database" in result.stderr
    marker = f"ZONECAT_DATA_DIR={tmp_path}".encode()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        left.append(int(entry.name))
                except OSError:
                    continue
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes of the failed serve are still running: {left}")


def test_a_fresh_database_is_migrated_without_alembic_in_the_serving_process(tmp_path: Path) -> None:
    script = """
import sys
from zonecat.cli.server_commands import migrate_apart
from zonecat.settings import Settings
from zonecat.store.database import HEAD_REVISION, Database

settings = Settings.from_env()
migrate_apart(settings)
db = Database(settings.effective_database_url)
assert db.current_revision() == HEAD_REVISION, db.current_revision()
assert not [name for name in sys.modules if name.split(".")[0] in ("alembic", "mako")]
db.migrate()  # at the head already: still nothing to import
assert "alembic" not in sys.modules
print("ok")
"""
    env = {**os.environ, "ZONECAT_DATA_DIR": str(tmp_path), "ZONECAT_DATABASE_URL": ""}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
