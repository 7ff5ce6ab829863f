"""Connections and transactions for SQLite (the default) and PostgreSQL.

``Database.write()`` is one write transaction. On SQLite it starts with ``BEGIN IMMEDIATE`` so two writers never
deadlock on a lock upgrade, and the threads of one process queue on an in-process lock first. On PostgreSQL it is
READ COMMITTED: writers run concurrently, and correctness comes from constraints, guarded writes
(``… WHERE status = :expected``, re-checked by PostgreSQL after a concurrent update) and row locks where a decision
reads before it writes (the claim's ``FOR UPDATE SKIP LOCKED``, the entity lock of a share or release).

``Database.read()`` is a read-only transaction that sees one consistent snapshot: SQLite's under WAL, and on
PostgreSQL a ``REPEATABLE READ READ ONLY`` transaction (which never fails to serialise), so a page and its cursors,
or a task and its events, come from the same moment on both.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.store.direct import DirectReads
from zonecat.store.secrets import SecretBox, attach

_IMMEDIATE = "zonecat_immediate"
# The newest revision in migrations/versions (a store test checks it against Alembic's own head): serve and the
# workers compare it with the database's without importing Alembic.
HEAD_REVISION = "0003"


class SchemaBehind(errors.ZonecatError):
    """The database schema is older than this version of zonecat; run `zonecat migrate`."""


def _sqlite_setup(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        # Straight to the driver: through exec_driver_sql the BEGIN cost as much as the query it starts (~70 µs of
        # SQLAlchemy execution machinery for a statement that returns nothing).
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


# A connection back from work less than this long ago is handed out again without a ping (HikariCP's
# aliveBypassWindowMs, 500 ms there). SQLAlchemy's pool_pre_ping pinged on every checkout: one more round trip for
# every transaction, ~15 % of the statements the API and the workers sent under load.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: sa.Engine) -> None:
    """Ping a pooled PostgreSQL connection at checkout only when it sat idle for a while.

    A connection used within the last second is almost surely alive, and if the database went away in that second
    the statement fails with a disconnect: SQLAlchemy then invalidates the whole pool (the request is answered 503
    and the next one connects afresh), which is what a failed ping would have led to a moment earlier."""

    @sa.event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return  # fresh from connect, or recently in use
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The pool then discards this connection and checks out (or opens) another.
            raise sa.exc.DisconnectionError("connection failed its ping after sitting idle") from exc


def _refuse_core_statements_in_pipeline(engine: sa.Engine) -> None:
    """Inside ``sent_together`` (psycopg's pipeline mode) a statement's answer arrives only when the block ends, and
    SQLAlchemy's own ``execute`` reads it at once: it would see no result at all. Such a statement is refused
    instead (only ``Prepared`` statements belong there); ``conn.execute`` alone pays for the check."""

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _on_execute(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if cursor.connection.info.pipeline_status:
            raise RuntimeError(f"only Prepared statements may run inside sent_together: {statement[:80]!r}")


class Database:
    """One database: an engine plus the transaction helpers every store module uses.

    ``secret_box`` encrypts the write-only columns at rest (``zonecat.store.secrets``); without one, writing or
    reading an encrypted write-only value raises ``SecretKeyMissing``.
    """

    def __init__(self, url: str, *, pool_size: int = 10, secret_box: SecretBox | None = None) -> None:
        self.url = url
        self.secret_box = secret_box
        self.is_sqlite = url.startswith("sqlite")
        # SQLite has one writer at a time, and its busy handler sleeps up to 100 ms between retries. Writers
        # therefore queue on locks that wake the next one at once: the threads of one process on a thread lock,
        # the processes sharing the file (`serve` and its worker process) on an flock of `<database>.writelock`.
        # The busy handler only arbitrates with a process that does not take the flock (none of zonecat's).
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._request_lock = threading.Lock() if self.is_sqlite else None
        self._file_lock: int | None = None
        sqlite_file: str | None = None
        if self.is_sqlite:
            path = url.removeprefix("sqlite:///")
            if path and path != url and not path.startswith(":memory:"):
                sqlite_file = path
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._file_lock = os.open(f"{path}.writelock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self.engine = sa.create_engine(
                url,
                # SQLite connections cost a file handle each: keep one per thread of the API's pool (40) instead of
                # opening and closing overflow connections (with their PRAGMAs) under load.
                pool_size=max(pool_size, 40),
                max_overflow=20,
                connect_args={"check_same_thread": False},
                hide_parameters=True,  # bound values can be secrets: never put them in an error or a log
            )
            _sqlite_setup(self.engine)
        else:
            self.engine = sa.create_engine(
                url,
                # API request threads and worker threads share the pool; past pool_size + max_overflow a request
                # waits (pool_timeout) for a connection rather than opening more.
                pool_size=pool_size,
                max_overflow=20,
                pool_timeout=30,
                pool_recycle=300,
                connect_args={"connect_timeout": 10},
                hide_parameters=True,
                # Whatever the server's default_transaction_isolation: guarded writes and the zone hold
                # (``zone_store.hold_zone``) need each statement of a write to see what was committed before it.
                isolation_level="READ COMMITTED",
            )
            _ping_when_idle(self.engine)
            _refuse_core_statements_in_pipeline(self.engine)
        attach(self.engine, secret_box)
        self.direct = DirectReads(self.engine, sqlite_file)

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction, committed when the block ends without an exception."""
        if self._write_lock is None:
            with self.engine.connect() as conn, conn.begin():
                yield conn
            return
        with self._write_lock, self._across_processes(), self.engine.connect() as conn:
            conn = conn.execution_options(**{_IMMEDIATE: True})
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def request_turn(self) -> Iterator[None]:
        """On SQLite, one thread of this process at a time through a whole write request: its reads, its decision
        and its write transaction. Elsewhere, nothing.

        SQLite takes one writer at a time anyway. A thread waiting here is blocked instead of running the Python
        of its own request, so the thread that holds the write lock is not kept waiting for the GIL after each
        statement, which it releases while SQLite works (interleaved B3 runs: 249 -> 278 installs/s)."""
        if self._request_lock is None:
            yield
            return
        with self._request_lock:
            yield

    @contextlib.contextmanager
    def _across_processes(self) -> Iterator[None]:
        if self._file_lock is None:
            yield
            return
        fcntl.flock(self._file_lock, fcntl.LOCK_EX)  # blocks without the GIL; the kernel frees it if we die
        try:
            yield
        finally:
            fcntl.flock(self._file_lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read-only transaction on one consistent snapshot."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                yield conn

    def read_statement(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A connection for one read-only statement (or several over rows that never change once written): a single
        statement sees one moment by itself. On PostgreSQL it runs without a transaction, one round trip instead of
        three (BEGIN, the statement, COMMIT); on SQLite it is ``read()``."""
        return self._single_statement(self.read)

    def write_statement(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A connection for one write statement, atomic by itself: on PostgreSQL without a transaction around it (one
        round trip instead of three); on SQLite it is ``write()`` (the write lock and ``BEGIN IMMEDIATE``)."""
        return self._single_statement(self.write)

    @contextlib.contextmanager
    def _single_statement(
        self, on_sqlite: Callable[[], contextlib.AbstractContextManager[sa.Connection]]
    ) -> Iterator[sa.Connection]:
        if self.is_sqlite:
            with on_sqlite() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    def dispose(self) -> None:
        self.direct.close()
        self.engine.dispose()
        if self._file_lock is not None:
            os.close(self._file_lock)
            self._file_lock = None

    # -- migrations ---------------------------------------------------------------------------------------

    def _alembic_config(self, conn: sa.Connection) -> Any:
        from alembic.config import Config

        config = Config()
        location = resources.files("zonecat.store") / "migrations"
        config.set_main_option("script_location", str(location))
        config.attributes["connection"] = conn
        return config

    def migrate(self) -> None:
        """Apply every Alembic revision the database lacks."""
        if self.current_revision() == HEAD_REVISION:
            return  # Alembic (with Mako) is imported only when there is something to migrate: ~10 MB a process
        from alembic import command

        with self.engine.connect() as conn:
            command.upgrade(self._alembic_config(conn), "head")
            if conn.in_transaction():
                conn.commit()

    def current_revision(self) -> str | None:
        """The database's Alembic revision (None when it was never migrated), read without importing Alembic."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            conn.commit()
        return str(found) if found is not None else None

    def schema_revision(self) -> tuple[str | None, str]:
        """(the database's revision, the code's head revision)."""
        return self.current_revision(), HEAD_REVISION

    def ensure_current(self) -> None:
        """Raise ``SchemaBehind`` unless the schema is at the code's head revision."""
        current, head = self.schema_revision()
        if current != head:
            raise SchemaBehind(
                f"the database schema is at revision {current or 'none'} but this zonecat needs {head}; "
                "run `zonecat migrate` first"
            )
