"""A throwaway PostgreSQL cluster for the test suite.

``PostgresServer.start()`` runs ``initdb`` into a fresh temporary directory and starts the server on a free loopback
port, with its unix socket in that directory and durability switched off (``fsync``, ``synchronous_commit`` and
``full_page_writes``): the data lives only as long as the test session. The server refuses to run as root, so as
root the binaries run as the ``postgres`` user (``runuser``, else ``su``) on a directory chowned to it.

Nothing here skips: if the binaries are missing or the server does not come up, ``PostgresError`` says why, with
the server's log.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

SERVER_USER = "postgres"  # the OS account that runs the server when the tests run as root
SUPERUSER = "postgres"  # the database superuser initdb creates
MAX_CONNECTIONS = 200
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found under /usr/lib/postgresql/*/bin, "
    "in `pg_config --bindir` or on PATH. Install them (Debian/Ubuntu: `apt-get install -y postgresql-15`), "
    "or point ZONECAT_TEST_PG_BINDIR at the directory that holds them."
)


class PostgresError(RuntimeError):
    """The test cluster could not be set up; the message says why (and carries the server log)."""


def find_bindir() -> Path:
    """The directory with ``initdb``, ``pg_ctl`` and ``postgres``: ZONECAT_TEST_PG_BINDIR, the newest
    /usr/lib/postgresql/<major>/bin, ``pg_config --bindir``, or wherever ``initdb`` is on PATH."""

    def complete(path: Path) -> bool:
        return all(os.access(path / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))

    explicit = os.environ.get("ZONECAT_TEST_PG_BINDIR")
    if explicit:
        if complete(Path(explicit)):
            return Path(explicit)
        raise PostgresError(f"ZONECAT_TEST_PG_BINDIR={explicit} does not hold initdb, pg_ctl and postgres")
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10)
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if complete(candidate):
            return candidate
    raise PostgresError(INSTALL_HINT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster in its own temporary directory; ``url()`` names a database on it (SQLAlchemy, psycopg 3)."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="zonecat-pg-"))  # short: the socket path must fit 107 bytes
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False
        self._names = itertools.count(1)

    # -- processes -------------------------------------------------------------------------------------------

    def _command(self, args: Sequence[str]) -> list[str]:
        """``args`` as run by the server's OS user: unchanged, or through runuser/su when we are root."""
        if not self.as_root:
            return list(args)
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", SERVER_USER, "--", *args]
        return ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(args)]

    def _run(self, args: Sequence[str], what: str, timeout: float = 60.0) -> None:
        try:
            result = subprocess.run(
                self._command(args), capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresError(f"{what} failed: {exc}\n{self._log_text()}") from exc
        if result.returncode != 0:
            raise PostgresError(
                f"{what} exited with {result.returncode}: {shlex.join(args)}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n{self._log_text()}"
            )

    def _log_text(self) -> str:
        try:
            return f"--- server log ({self.log}) ---\n{self.log.read_text(errors='replace')[-8000:]}"
        except OSError:
            return "(no server log)"

    def start(self, attempts: int = 3) -> None:
        """initdb and start; a port taken between choosing and binding it is retried with another one."""
        if self.as_root:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError as exc:
                raise PostgresError(
                    f"running as root, but there is no '{SERVER_USER}' OS user to run PostgreSQL as "
                    "(the server refuses to run as root); install the postgresql package, or run the tests "
                    "as an ordinary user"
                ) from exc
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.root.chmod(0o700)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            "initdb",
        )
        for attempt in range(attempts):
            self.port = _free_port()
            options = " ".join(
                [
                    f"-p {self.port}",
                    f"-k {self.root}",
                    "-c listen_addresses=127.0.0.1",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    f"-c max_connections={MAX_CONNECTIONS}",
                    "-c shared_buffers=32MB",
                    "-c log_min_messages=warning",
                    "-c log_min_error_statement=panic",  # failed statements are expected in tests; keep the log short
                ]
            )
            try:
                pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log)]
                self._run([*pg_ctl, "-w", "-t", "60", "start"], "pg_ctl start", timeout=90)
            except PostgresError:
                if attempt + 1 == attempts:
                    raise
                continue
            self.running = True
            break
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=5):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(f"PostgreSQL does not accept connections: {exc}\n{self._log_text()}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (immediately: the data is thrown away) and remove the directory."""
        if self.running:
            self.running = False
            with contextlib.suppress(PostgresError):
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/psycopg connection string."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL (psycopg 3)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @contextlib.contextmanager
    def admin(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            yield conn

    def new_name(self, prefix: str = "test") -> str:
        return f"{prefix}_{os.getpid()}_{next(self._names)}"

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a database (a copy of ``template`` when given, else empty) and return its name."""
        name = name or self.new_name()
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        with self.admin() as conn:
            conn.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        """Drop the database, disconnecting whoever is still on it."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def connected(self, name: str) -> int:
        """How many sessions are connected to the database."""
        with self.admin() as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
        return int(row[0]) if row else 0


class DatabasePool:
    """Fresh copies of a template database, fast.

    A database is a ``CREATE DATABASE … TEMPLATE`` copy of a template prepared once (migrated, perhaps seeded):
    about 0.3 s each here. When a test is done with one and nobody is connected to it any more, emptying its tables
    and copying the template's rows back in (``COPY``, a few milliseconds) makes it as good as a new copy, so it is
    handed to the next test. Anything else — a session still connected (a leaked thread), a failed clean-up, a
    schema a test changed — drops it instead.
    """

    def __init__(self, server: PostgresServer, template: str, tables: Sequence[str]) -> None:
        self.server = server
        self.template = template
        self.tables = list(tables)  # children before parents (foreign keys)
        self._free: list[str] = []
        self._revision = self._alembic_revision(template)
        self._seed: dict[str, bytes] = {}
        with psycopg.connect(self.server.dsn(template), autocommit=True) as conn, conn.cursor() as cursor:
            for table in self.tables:
                statement = sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(table))
                with cursor.copy(statement) as copy:
                    data = b"".join(bytes(chunk) for chunk in copy)
                if data:
                    self._seed[table] = data

    def _alembic_revision(self, name: str) -> object:
        with psycopg.connect(self.server.dsn(name), autocommit=True) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None

    def acquire(self) -> str:
        if self._free:
            return self._free.pop()
        return self.server.create_database(template=self.template)

    def release(self, name: str) -> None:
        try:
            if self.server.connected(name) == 0 and self._reset(name):
                self._free.append(name)
                return
        except psycopg.Error:
            pass
        self.server.drop_database(name)

    def _reset(self, name: str) -> bool:
        with psycopg.connect(self.server.dsn(name), autocommit=True) as conn, conn.transaction():
            cursor = conn.cursor()
            for table in self.tables:
                cursor.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            for table in reversed(self.tables):  # parents first
                if table in self._seed:
                    with cursor.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(table))) as copy:
                        copy.write(self._seed[table])
            row = cursor.execute("SELECT version_num FROM alembic_version").fetchone()
        return (row[0] if row else None) == self._revision


def backend_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The URL of a fresh database of ``backend`` for the requesting test (already migrated on PostgreSQL)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'zonecat.db'}"
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_database_url"))
    raise AssertionError(f"unknown backend {backend}")
