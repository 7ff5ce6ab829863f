"""Read-only snapshots through the database driver itself, for the requests served most often.

SQLAlchemy Core costs about 100 to 300 µs of Python per statement on this kind of machine (statement construction,
cache-key generation, result adaptation, events); the same point read through ``sqlite3`` costs about 10 µs. The
reads that every request makes (the bearer token) and the ones clients poll (a task) go through a
``DirectReader`` instead: plain SQL with ``?`` placeholders, rows as dicts, JSON and boolean columns decoded by the
query's own function in ``zonecat.store.hot``.

On SQLite a reader can run on the event loop itself (``DirectReads.on_loop``): its connection never waits for a
lock (``busy_timeout`` 0; in WAL mode readers do not wait for writers), and a rare ``SQLITE_BUSY`` is reported as
``WouldWait`` so the caller retries in a thread. Elsewhere readers check out a pooled connection.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

Row = dict[str, Any]


class WouldWait(Exception):
    """Not on the event loop after all: the on-loop SQLite connection met a lock it must not wait for, or the work
    found it has more to do than a loop may (a large task's links). The caller runs it again in a thread."""


class DirectReader:
    """One read-only transaction on a driver connection. SQL uses ``?`` placeholders on every database."""

    def __init__(self, cursor: Any, *, sqlite: bool, on_loop: bool = False) -> None:
        self._cursor = cursor
        self.sqlite = sqlite
        self.on_loop = on_loop  # work that turns out large raises WouldWait to move to a thread

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        if not self.sqlite:
            sql = sql.replace("?", "%s")  # psycopg's placeholder; zonecat's hot SQL has no literal ? or %
        self._cursor.execute(sql, tuple(params))
        return self._cursor

    def values(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The first row's values in the order the statement selects them, for a caller that names them itself."""
        found: tuple[Any, ...] | None = self._run(sql, params).fetchone()
        return found

    def one(self, sql: str, params: Sequence[Any]) -> Row | None:
        cursor = self._run(sql, params)
        found = cursor.fetchone()
        if found is None:
            return None
        return dict(zip([column[0] for column in cursor.description], found, strict=True))

    def all(self, sql: str, params: Sequence[Any]) -> list[Row]:
        cursor = self._run(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, found, strict=True)) for found in cursor.fetchall()]


class LoopSnapshot:
    """``DirectReads.on_loop``'s context manager. A class rather than a generator: entered on every request, a
    generator-based one cost about 15 µs of a ~250 µs task poll under load."""

    __slots__ = ("_connection", "_cursor", "_reads", "_snapshot")

    def __init__(self, reads: DirectReads, snapshot: bool) -> None:
        self._reads = reads
        self._snapshot = snapshot

    def __enter__(self) -> DirectReader:
        connection = self._reads._checkout()
        cursor = None
        try:
            cursor = connection.cursor()
            if self._snapshot:
                try:
                    cursor.execute("BEGIN")
                except sqlite3.OperationalError as exc:
                    raise WouldWait(str(exc)) from exc
        except BaseException:
            if cursor is not None:
                cursor.close()
            self._reads._idle.append(connection)
            raise
        self._connection, self._cursor = connection, cursor
        return DirectReader(cursor, sqlite=True, on_loop=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, traceback: Any) -> None:
        try:
            try:
                if self._snapshot:
                    self._cursor.execute("COMMIT")
            finally:
                self._cursor.close()
        finally:
            self._reads._idle.append(self._connection)
        if isinstance(exc, sqlite3.OperationalError):
            if "locked" in str(exc) or "busy" in str(exc):
                raise WouldWait(str(exc)) from exc
            raise self._reads._wrapped(exc) from exc


class DirectReads:
    """Where ``DirectReader`` transactions come from for one ``Database``."""

    def __init__(self, engine: sa.Engine, sqlite_path: str | None) -> None:
        self._engine = engine
        self._is_sqlite = engine.dialect.name == "sqlite"
        self._sqlite_path = sqlite_path
        # Idle on-loop connections. A block using one never awaits, so each event loop holds at most one at a time;
        # several loops (one per thread, as test clients make) take one each.
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._opened: list[sqlite3.Connection] = []

    @property
    def loop_capable(self) -> bool:
        """Whether ``on_loop`` may be used: a SQLite file (a PostgreSQL read is a network round trip)."""
        return self._sqlite_path is not None

    def on_loop(self, snapshot: bool = True) -> LoopSnapshot:
        """A snapshot on an SQLite connection kept for event loops, which never waits for a lock.

        Raises ``WouldWait`` instead of waiting. The block must not await. ``snapshot=False``: each statement sees
        the database as it is when it runs (no BEGIN and COMMIT), for work whose statements need no common moment."""
        assert self._sqlite_path is not None
        return LoopSnapshot(self, snapshot)

    def _checkout(self) -> sqlite3.Connection:
        try:
            return self._idle.pop()
        except IndexError:
            pass
        assert self._sqlite_path is not None
        connection = sqlite3.connect(self._sqlite_path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout=0")
        connection.execute("PRAGMA query_only=1")
        with self._lock:
            self._opened.append(connection)
        return connection

    @contextlib.contextmanager
    def pooled(self, snapshot: bool = True) -> Iterator[DirectReader]:
        """A snapshot on a connection of the engine's pool (any thread): SQLite's WAL snapshot, or on PostgreSQL a
        ``REPEATABLE READ READ ONLY`` transaction, as ``Database.read`` gives.

        ``snapshot=False`` is for work whose statements need no common moment (one statement sees one by itself):
        it then runs without a transaction, each statement seeing the database as it is when it runs (on
        PostgreSQL: no BEGIN and COMMIT round trips)."""
        dbapi_error = self._engine.dialect.loaded_dbapi.Error
        try:
            connection = self._engine.raw_connection()
        except dbapi_error as exc:
            # The pool hands out the driver's own error when it cannot connect: wrap it as every query's is.
            raise self._wrapped(exc) from exc
        try:
            if self._is_sqlite:
                with self._sqlite_snapshot(connection, snapshot) as reader:
                    yield reader
            else:
                with self._postgres_snapshot(connection, snapshot) as reader:
                    yield reader
        except dbapi_error as exc:
            # Driver errors reach callers as SQLAlchemy's, like every other query's (a lost PostgreSQL is a 503).
            if self._engine.dialect.is_disconnect(exc, connection.dbapi_connection, None):
                connection.invalidate(exc)
            raise self._wrapped(exc) from exc
        finally:
            connection.close()

    @contextlib.contextmanager
    def _sqlite_snapshot(self, connection: Any, snapshot: bool) -> Iterator[DirectReader]:
        cursor = connection.cursor()
        try:
            if snapshot:
                cursor.execute("BEGIN")
            yield DirectReader(cursor, sqlite=True)
        finally:
            cursor.close()
            if connection.is_valid:
                connection.rollback()  # read-only: ending it either way is the same

    @contextlib.contextmanager
    def _postgres_snapshot(self, connection: Any, snapshot: bool) -> Iterator[DirectReader]:
        # In autocommit mode the transaction is begun by one statement that also sets its isolation, instead of
        # psycopg's implicit BEGIN followed by SET TRANSACTION (one round trip less). It ends with COMMIT, never
        # ROLLBACK: psycopg forgets every prepared statement of the connection after a ROLLBACK (and deallocates
        # them all on the next query), so the statements hot reads repeat would be parsed and planned again.
        driver = connection.driver_connection
        driver.autocommit = True
        cursor = driver.cursor()
        try:
            if snapshot:
                cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", prepare=False)
            try:
                yield DirectReader(cursor, sqlite=False)
            except BaseException:
                if snapshot and not driver.closed:
                    with contextlib.suppress(self._engine.dialect.loaded_dbapi.Error):
                        cursor.execute("ROLLBACK", prepare=False)
                raise
            if snapshot:
                cursor.execute("COMMIT", prepare=False)
        finally:
            cursor.close()
            try:
                if not driver.closed:
                    driver.autocommit = False
            except self._engine.dialect.loaded_dbapi.Error:
                # Still in a transaction it could not end: never hand a connection in autocommit back to the pool.
                connection.invalidate()

    def _wrapped(self, exc: Exception) -> sa.exc.StatementError:
        return sa.exc.DBAPIError.instance(
            "direct read", None, exc, self._engine.dialect.loaded_dbapi.Error, hide_parameters=True
        )

    def close(self) -> None:
        with self._lock:
            for connection in self._opened:
                connection.close()
            self._opened.clear()
            self._idle.clear()
