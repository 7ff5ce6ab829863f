"""Core statements run through the database driver, inside the caller's SQLAlchemy transaction.

``conn.execute(statement)`` costs ~45 to 60 µs of Python per statement on this kind of machine before the driver sees
it (cache-key generation, execution context, events, result proxy), where the driver's own ``execute`` of the same
insert costs ~8 µs (measured: 51 µs against 8 µs for a four-column insert, 66 µs against 8 µs for a point read). A
3-entity install runs about twenty statements, most of them while SQLite's one write lock is held, so that overhead
bounded the installs per second every writer shares.

A ``Prepared`` keeps one statement written with SQLAlchemy Core. The first time it runs on a dialect it is compiled
by SQLAlchemy's own compiler (the SQL is exactly what ``conn.execute`` would send), and the SQL, the order of its
parameters and SQLAlchemy's bind and result processors of each parameter's and column's type (JSON, Boolean, the
encrypted ``EncryptedJSON``) are kept. Every later run is the driver's ``execute`` plus those processors, on the
driver connection of ``conn``: the same transaction, the same commit. Driver errors are raised as SQLAlchemy's
(``IntegrityError``, ``OperationalError`` …), as ``conn.execute`` raises them, and a lost connection is invalidated.

Only statements whose SQL never changes with their parameters qualify (no expanding ``IN``); an INSERT is compiled
once per set of column names it is given.

``sent_together`` ends a transaction with statements whose answers nobody waits for: on PostgreSQL they and the
COMMIT go out in one round trip (psycopg's pipeline mode). ``answered_together`` sends statements whose answers are
read only after all of them were sent (``first_later``, ``rowcount_later``): one round trip for all on PostgreSQL.
A round trip to a local PostgreSQL costs ~210 µs of wall time and ~115 µs of the client's CPU on the 2-vCPU VM the
benchmarks run on (a bare ``SELECT 1``; a process-to-process socket ping-pong alone costs 84 µs there), so the
statements of a request cost more in waiting than in work.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

Row = dict[str, Any]
Processor = Callable[[Any], Any]
T = TypeVar("T")
U = TypeVar("U")

_PYFORMAT_NAME = re.compile(r"%\(([^)]+)\)s")


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters, in the order the SQL takes them (pyformat: each once)
    positional: bool
    defaults: Mapping[str, Any]  # values the statement carries itself (a literal 1 in ``attempts + 1``)
    binders: tuple[tuple[str, Processor], ...]  # bind processors by parameter name
    results: Mapping[str, Processor]  # result processors by column name
    # The names of the result's columns and their processors, by position: filled by the first fetch. The driver
    # builds its column descriptions anew on every read of ``cursor.description`` (psycopg: ~8 µs a column, ~0.3 ms
    # of the worker's CPU per 3-entity install), and the columns of one SQL text are always the same.
    layout: list[tuple[list[str], list[tuple[int, Processor]]]] = field(default_factory=list, compare=False)
    unnest_sql: list[str | None] = field(default_factory=list, compare=False)  # ``_unnest_form``, once known


class Answer(Generic[T]):
    """What a statement answered, read when ``get`` is first called (after the ``answered_together`` block that
    sent it, on PostgreSQL) or at once. Made by ``Prepared.first_later`` and ``rowcount_later``, or ``known``."""

    __slots__ = ("_read", "_value")

    def __init__(self, read: Callable[[], T], *, now: bool) -> None:
        self._read: Callable[[], T] | None = read
        if now:
            self.get()

    @classmethod
    def known(cls, value: T) -> Answer[T]:
        """An answer already in hand (a statement run at once, e.g. on SQLite)."""
        return cls(lambda: value, now=True)

    def get(self) -> T:
        if self._read is not None:
            self._value, self._read = self._read(), None
        return self._value

    def then(self, convert: Callable[[T], U]) -> Answer[U]:
        """This answer, converted by ``convert`` when it is read."""
        return Answer(lambda: convert(self.get()), now=self._read is None)


class Prepared:
    """One Core statement (or one per dialect name, for dialect-specific constructs) run through the driver.

    Made once, at import (its compiled forms are kept per engine for the life of the engine)."""

    def __init__(self, statement: sa.Executable | Mapping[str, sa.Executable]) -> None:
        self._statements = statement if isinstance(statement, Mapping) else None
        self._statement = None if isinstance(statement, Mapping) else statement

    # -- running -------------------------------------------------------------------------------------------

    def rows(self, conn: sa.Connection, params: Mapping[str, Any]) -> list[Row]:
        """Every row the statement returns, as dicts by column name."""
        compiled, cursor = self._run(conn, params)
        try:
            return self._fetch(compiled, cursor, cursor.fetchall())
        finally:
            cursor.close()

    def first(self, conn: sa.Connection, params: Mapping[str, Any]) -> Row | None:
        """The first row the statement returns, or None."""
        compiled, cursor = self._run(conn, params)
        try:
            found = cursor.fetchone()
            return self._fetch(compiled, cursor, [found])[0] if found is not None else None
        finally:
            cursor.close()

    def scalar(self, conn: sa.Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        found = self.first(conn, params)
        return next(iter(found.values())) if found else None

    def run(self, conn: sa.Connection, params: Mapping[str, Any]) -> None:
        """Run a statement whose answer is not read. Inside ``sent_together`` it is only queued, and its error (if
        any) is raised when the block ends."""
        _, cursor = self._run(conn, params)
        cursor.close()

    def rowcount(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed (inside a pipelined block, once the
        answers so far are back)."""
        return self.rowcount_later(conn, params).get()

    def first_later(self, conn: sa.Connection, params: Mapping[str, Any]) -> Answer[Row | None]:
        """``first``, whose row is read when asked for: inside ``answered_together`` on PostgreSQL, once the block has
        sent every statement; elsewhere at once."""
        compiled, cursor = self._run(conn, params)
        # (psycopg's fetch inside a pipeline syncs by itself: a row read inside the block is right, only slower.)

        def read() -> Row | None:
            try:
                found = cursor.fetchone()
                return self._fetch(compiled, cursor, [found])[0] if found is not None else None
            finally:
                cursor.close()

        return Answer(read, now=_PIPELINE not in conn.info)

    def rowcount_later(self, conn: sa.Connection, params: Mapping[str, Any]) -> Answer[int]:
        """``rowcount``, read when asked for (see ``first_later``)."""
        _, cursor = self._run(conn, params)
        info = conn.info

        def read() -> int:
            try:
                pipeline = info.get(_PIPELINE)
                if pipeline is not None:
                    pipeline.sync()  # read inside the block: the count is known only once the answer is back
                return int(cursor.rowcount)
            finally:
                cursor.close()

        return Answer(read, now=_PIPELINE not in info)

    def many(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement that returns no rows once per parameter set; every set names the same parameters.

        On PostgreSQL a plain one-row INSERT becomes one statement for all the rows (``INSERT … SELECT * FROM
        unnest(<one array per column>)``: one SQL text whatever the number of rows); elsewhere it is the driver's
        ``executemany``. psycopg's ``executemany`` of three rows cost ~400 µs of CPU against ~150 µs for one
        statement."""
        if not rows:
            return
        compiled = self._compile(conn.dialect, rows[0])
        driver, cursor = self._cursor(conn)
        try:
            params = [self._params(compiled, row) for row in rows]
            arrays = _unnest_form(compiled) if len(rows) > 1 and not compiled.positional else None
            if arrays is None:
                self._call(conn, driver, cursor, compiled.sql, params, many=True)
            else:
                by_name = {name: [row[name] for row in params] for name in compiled.names}
                self._call(conn, driver, cursor, arrays, by_name, many=False)
        finally:
            cursor.close()

    def _run(self, conn: sa.Connection, params: Mapping[str, Any]) -> tuple[_Compiled, Any]:
        compiled = self._compile(conn.dialect, params)
        driver, cursor = self._cursor(conn)
        try:
            self._call(conn, driver, cursor, compiled.sql, self._params(compiled, params), many=False)
        except BaseException:
            cursor.close()
            raise
        return compiled, cursor

    @staticmethod
    def _cursor(conn: sa.Connection) -> tuple[Any, Any]:
        driver = _begun(conn)
        return driver, driver.cursor()

    @staticmethod
    def _call(conn: sa.Connection, driver: Any, cursor: Any, sql: str, params: Any, many: bool) -> None:
        with _as_sqlalchemy_errors(conn, driver, cursor, sql):
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)

    @staticmethod
    def _params(compiled: _Compiled, given: Mapping[str, Any]) -> Any:
        values = {**compiled.defaults, **given}
        for name, process in compiled.binders:
            # None too: SQLAlchemy's JSON stores a None as JSON null, not SQL NULL
            values[name] = process(values.get(name))
        if compiled.positional:
            return tuple(values[name] for name in compiled.names)
        return {name: values[name] for name in compiled.names}

    @staticmethod
    def _fetch(compiled: _Compiled, cursor: Any, found: list[Any]) -> list[Row]:
        if not compiled.layout:
            names = [column[0] for column in cursor.description]
            processors = [(i, compiled.results[name]) for i, name in enumerate(names) if name in compiled.results]
            compiled.layout.append((names, processors))  # a race appends the same layout twice: harmless
        names, processors = compiled.layout[0]
        rows = []
        for values in found:
            row = dict(zip(names, values, strict=True))
            for index, process in processors:
                row[names[index]] = process(values[index])
            rows.append(row)
        return rows

    # -- compiling -----------------------------------------------------------------------------------------

    def _compile(self, dialect: sa.Dialect, params: Mapping[str, Any]) -> _Compiled:
        statement = self._statement if self._statements is None else self._statements[dialect.name]
        keys = tuple(sorted(params)) if isinstance(statement, sa.Insert) else ()
        # Kept on the dialect, one per engine: the processors are bound to it (EncryptedJSON finds its engine's key
        # through the dialect), and they go away with it.
        cache: dict[tuple[Prepared, tuple[str, ...]], _Compiled] = dialect.__dict__.setdefault(_CACHE, {})
        cached = cache.get((self, keys))
        if cached is None:
            with _compile_lock:
                cached = cache.get((self, keys))
                if cached is None:
                    cached = cache[(self, keys)] = _compile(statement, dialect, list(keys) or None)
        return cached


@contextlib.contextmanager
def sent_together(conn: sa.Connection) -> Iterator[None]:
    """The last statements of ``conn``'s transaction, then its COMMIT: the transaction is over when the block ends.

    On psycopg the block runs in pipeline mode: each ``Prepared`` statement is queued, and they go to the server with
    the COMMIT in one round trip when the block ends (a ``first``/``rows``/``rowcount`` inside waits for the answers
    so far). Only ``Prepared`` statements may run inside: SQLAlchemy's own ``execute`` reads a result the moment the
    statement is sent. An error of any statement is raised when the block ends, as SQLAlchemy's, and nothing after it
    (the COMMIT included) is done; the caller's transaction then rolls back as usual. On other drivers the statements
    run one by one, then the transaction commits.
    """
    with _pipelined(conn, "COMMIT") as driver:
        yield
        if driver is not None:
            # Queued like the statements, so that it goes in their round trip (``driver.commit()`` would sync once
            # more). The connection is idle afterwards: SQLAlchemy's commit below sends nothing.
            driver.cursor().execute("COMMIT")
    conn.commit()


@contextlib.contextmanager
def answered_together(conn: sa.Connection) -> Iterator[None]:
    """Statements of ``conn``'s transaction sent together; their answers (``Prepared.first_later``,
    ``rowcount_later``) are read after the block. On psycopg the block runs in pipeline mode: the statements go to
    the server in one round trip when it ends, and an error of any of them is raised there, as SQLAlchemy's (the
    transaction is then aborted: the caller's rolls back as usual). Elsewhere they run one by one, at once.

    For statements whose answers decide nothing about the ones sent with them; a caller that refuses an answer
    (a lost lease) raises after the block, and the transaction rolls back with every statement of it."""
    with _pipelined(conn, "pipeline"):
        yield


@contextlib.contextmanager
def _pipelined(conn: sa.Connection, sql: str) -> Iterator[Any]:
    """The block in psycopg's pipeline mode, its driver errors raised as SQLAlchemy's (``sql`` names the block in
    them); yields the driver connection, or None on a driver without pipelines (the statements then run at once).

    The pipeline is kept in the connection's info while the block runs (``rowcount`` and an answer read inside the
    block sync through it), then whatever was there before is put back: blocks nest, as psycopg's pipelines do. The
    info dict is taken first: once a lost connection is invalidated, ``conn.info`` itself raises, which would hide
    the real error."""
    driver = _begun(conn)
    if not hasattr(driver, "pipeline"):
        yield None
        return
    info = conn.info
    outer = info.get(_PIPELINE)
    with _as_sqlalchemy_errors(conn, driver, None, sql), driver.pipeline() as pipeline:
        info[_PIPELINE] = pipeline
        try:
            yield driver
        finally:
            if outer is None:
                info.pop(_PIPELINE, None)
            else:
                info[_PIPELINE] = outer


@contextlib.contextmanager
def _as_sqlalchemy_errors(conn: sa.Connection, driver: Any, cursor: Any, sql: str) -> Iterator[None]:
    """Driver errors raised as SQLAlchemy's (without parameters: they can be secrets), as ``conn.execute`` raises
    them; a lost connection is invalidated."""
    dialect = conn.dialect
    error = dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        invalidated = dialect.is_disconnect(exc, driver, cursor)
        if invalidated:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql, None, exc, error, hide_parameters=True, connection_invalidated=invalidated, dialect=dialect
        ) from exc


# One ``%(name)s::TYPE`` of a compiled INSERT's VALUES, as SQLAlchemy's psycopg dialect renders each parameter.
_CAST_PARAMETER = re.compile(r"%\((\w+)\)s::([A-Z][A-Z ]*(?:\(\d+\))?)")


def _unnest_form(compiled: _Compiled) -> str | None:
    """The rows-at-once form of a compiled one-row INSERT (PostgreSQL, pyformat): each parameter an array of the
    column's values. None when the SQL is not exactly ``INSERT INTO t (…) VALUES (%(a)s::T, …)``."""
    if compiled.unnest_sql:
        return compiled.unnest_sql[0]
    head, marker, values = compiled.sql.partition(" VALUES (")
    found: str | None = None
    if marker and values.endswith(")") and head.startswith("INSERT INTO "):
        parts = values[:-1].split(", ")
        casts = [_CAST_PARAMETER.fullmatch(part) for part in parts]
        if all(casts) and [m.group(1) for m in casts if m] == list(compiled.names):
            arrays = ", ".join(f"%({m.group(1)})s::{m.group(2)}[]" for m in casts if m)
            found = f"{head} SELECT * FROM unnest({arrays})"
    compiled.unnest_sql.append(found)
    return found


def _begun(conn: sa.Connection) -> Any:
    """The driver connection of ``conn``, in a SQLAlchemy transaction."""
    if not conn.in_transaction():
        conn.begin()  # what conn.execute's autobegin would do: the caller's commit or rollback then ends it
    driver = conn.connection.dbapi_connection
    assert driver is not None
    return driver


_CACHE = "_zonecat_prepared"
_PIPELINE = "zonecat_pipeline"  # key of ``Connection.info``: the open psycopg pipeline of ``_pipelined``
_compile_lock = threading.Lock()


def _compile(statement: Any, dialect: sa.Dialect, column_keys: list[str] | None) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    sql = compiled.string
    if "POSTCOMPILE" in sql:
        raise TypeError("a Prepared statement cannot have an expanding IN: its SQL would change with its parameters")
    positional = bool(compiled.positional)
    if positional:
        names = tuple(compiled.positiontup or ())
    else:
        names = tuple(dict.fromkeys(_PYFORMAT_NAME.findall(sql)))
    binds = {name: compiled.binds[name] for name in set(names)}
    defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
    binders: list[tuple[str, Processor]] = []
    for name, bind in binds.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binders.append((name, process))
    results: dict[str, Processor] = {}
    for column in getattr(statement, "exported_columns", ()):
        process = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            results[column.name] = process
    return _Compiled(sql, names, positional, defaults, tuple(binders), results)
