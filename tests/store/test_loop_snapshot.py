"""The event-loop snapshot of SQLite (``DirectReads.on_loop``): a lock it meets is ``WouldWait``, never a wait;
any other driver error is SQLAlchemy's; its connection goes back to the idle ones exactly once, whatever happens.
(It exists only on SQLite: PostgreSQL reads always go through the pool, which the store suite covers.)"""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from zonecat.store.database import Database
from zonecat.store.direct import WouldWait

COUNT = "SELECT count(*) AS n FROM zones"


def test_the_loop_snapshot_never_waits_and_always_gives_its_connection_back(sqlite_db: Database) -> None:
    reads = sqlite_db.direct
    path = reads._sqlite_path
    assert path is not None
    # A connection in exclusive locking mode keeps its lock until it closes, and every read meets it. It can take
    # the lock only while no other connection has the file open (in WAL mode each holds a shared lock on it).
    reads.close()
    sqlite_db.engine.dispose()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN IMMEDIATE")
    locker.execute("UPDATE zones SET name = name")
    idle: list[sqlite3.Connection] = []
    try:
        for snapshot in (True, False, True):
            with pytest.raises(WouldWait), reads.on_loop(snapshot) as reader:
                reader.one(COUNT, [])
            idle = idle or list(reads._idle)
            assert len(idle) == 1 and reads._idle == idle, snapshot
    finally:
        locker.close()
    for snapshot in (True, False):
        with pytest.raises(sa.exc.DBAPIError), reads.on_loop(snapshot) as reader:
            reader.one("SELECT no_such_column FROM zones", [])
        assert reads._idle == idle
        with pytest.raises(ValueError), reads.on_loop(snapshot):
            raise ValueError("not the database's")
        assert reads._idle == idle
        # Nothing of the failed blocks is left open: the next snapshot reads, and ends.
        with reads.on_loop(snapshot) as reader:
            assert reader.one(COUNT, []) == {"n": 0}
        assert reads._idle == idle
        assert not idle[0].in_transaction


def test_nested_loop_snapshots_take_a_connection_each(sqlite_db: Database) -> None:
    reads = sqlite_db.direct
    with reads.on_loop() as outer, reads.on_loop(snapshot=False) as inner:
        assert outer.one(COUNT, []) == inner.one(COUNT, []) == {"n": 0}
        assert reads._idle == []
    assert len(reads._idle) == 2 and reads._idle[0] is not reads._idle[1]
