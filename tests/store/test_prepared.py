"""``Prepared`` statements (run through the driver) write and read exactly what ``conn.execute`` does, on every
database, and fail the way it fails."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.pg import backend_url
from zonecat.store.database import Database
from zonecat.store.prepared import Prepared, _unnest_form, answered_together, sent_together
from zonecat.store.schema import entities, installs, task_events
from zonecat.store.secrets import SecretBox, generate_key

_INSERT_ENTITY = Prepared(entities.insert())
_ENTITY = Prepared(sa.select(entities).where(entities.c.id == sa.bindparam("id")))
_RENAME = Prepared(entities.update().where(entities.c.id == sa.bindparam("entity_id")).values(slug=sa.bindparam("s")))
_IN_ANY = Prepared(sa.select(entities.c.id).where(entities.c.id.in_(sa.bindparam("ids", expanding=True))))
_INSTALL_OUTPUTS = Prepared(sa.select(installs.c.outputs).where(installs.c.id == sa.bindparam("id")))


@pytest.fixture(params=["sqlite", "postgresql"])
def boxed(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    database = Database(backend_url(request, request.param, tmp_path), secret_box=SecretBox.from_text(generate_key()))
    database.migrate()
    yield database
    database.dispose()


def _entity(entity_id: str, **changes: Any) -> dict[str, Any]:
    row = {
        "id": entity_id,
        "organization_id": "org",
        "zone_id": "zon_1",
        "type": "secret",
        "identifier": entity_id,
        "slug": entity_id,
        "attributes": {"name": "n", "nested": [1, {"two": None}], "flag": True},
        "secret_attributes": {"data": "s3cr3t"},
        "managed": True,
        "created_by_install_id": None,
        "created_by_task_id": None,
        "created_at_ms": 1,
        "updated_at_ms": 1,
    }
    row.update(changes)
    return row


def test_rows_written_either_way_read_the_same_either_way(boxed: Database) -> None:
    with boxed.write() as conn:
        _INSERT_ENTITY.rowcount(conn, _entity("ent_prepared"))
        conn.execute(entities.insert(), _entity("ent_core"))
        # Several rows at once (entities' Boolean has no cast in its SQL: executemany), a null and a false among them.
        _INSERT_ENTITY.many(conn, [_entity("ent_many_1"), _entity("ent_many_2", created_by_install_id="ins_1")])
        _INSERT_ENTITY.many(conn, [_entity("ent_other_1", managed=False), _entity("ent_other_2", managed=False)])
    with boxed.read() as conn:
        through_core = {row.id: dict(row._mapping) for row in conn.execute(sa.select(entities).order_by(entities.c.id))}
        through_driver = {key: _ENTITY.first(conn, {"id": key}) for key in through_core}
        stored = {
            row.id: row.secret_attributes for row in conn.execute(sa.text("SELECT id, secret_attributes FROM entities"))
        }
    assert through_driver == through_core
    for key, row in through_core.items():
        assert row["secret_attributes"] == {"data": "s3cr3t"}
        assert row["managed"] is not key.startswith("ent_other")
        raw = stored[key] if isinstance(stored[key], dict) else json.loads(stored[key])
        assert set(raw) == {"enc", "set"} and "s3cr3t" not in str(raw), "the driver path must seal as the column does"
        assert raw["set"] == ["data"]
    for key in ("ent_prepared", "ent_many_1", "ent_other_1"):
        renamed = {"id": key, "identifier": key, "slug": key, "managed": key != "ent_other_1"}
        assert through_core[key] == {**through_core["ent_core"], **renamed}
    assert through_core["ent_many_2"]["created_by_install_id"] == "ins_1"
    assert through_core["ent_many_1"]["created_by_install_id"] is None


def _install(**changes: Any) -> dict[str, Any]:
    row = {
        "organization_id": "org",
        "zone_id": "zon_1",
        "package_id": "pkg_1",
        "package_slug": "p",
        "package_version": 1,
        "version_id": "ver_1",
        "status": "pending",
        "inputs": {},
        "secret_inputs": {},
        "outputs": None,
        "created_at_ms": 1,
        "updated_at_ms": 1,
    }
    row.update(changes)
    return row


def test_a_json_none_is_stored_as_sqlalchemy_stores_it(boxed: Database) -> None:
    install = _install()
    with boxed.write() as conn:
        Prepared(installs.insert()).rowcount(conn, {**install, "id": "ins_driver"})
        conn.execute(installs.insert(), {**install, "id": "ins_core"})
    with boxed.read() as conn:
        null_outputs = {row.id for row in conn.execute(sa.text("SELECT id FROM installs WHERE outputs IS NULL"))}
        assert _INSTALL_OUTPUTS.first(conn, {"id": "ins_driver"}) == {"outputs": None}
    assert ("ins_driver" in null_outputs) == ("ins_core" in null_outputs), "both stored it alike"


def test_rows_inserted_at_once_read_as_rows_inserted_one_by_one(boxed: Database) -> None:
    install = _install(inputs={"nested": [1, {"two": None}], "flag": False}, secret_inputs={"password": "s3cr3t"})
    with boxed.write() as conn:
        conn.execute(installs.insert(), [{**install, "id": "ins_core", "outputs": None}])
        conn.execute(installs.insert(), [{**install, "id": "ins_core_out", "outputs": {"a": "b"}}])
        # All of installs' columns carry a cast in their SQL: on PostgreSQL this is the one-statement form.
        Prepared(installs.insert()).many(
            conn,
            [{**install, "id": "ins_many", "outputs": None}, {**install, "id": "ins_many_out", "outputs": {"a": "b"}}],
        )
    with boxed.read() as conn:
        rows = {row.id: dict(row._mapping) for row in conn.execute(sa.select(installs))}
        null_outputs = {row.id for row in conn.execute(sa.text("SELECT id FROM installs WHERE outputs IS NULL"))}
    assert rows["ins_many"] == {**rows["ins_core"], "id": "ins_many"}
    assert rows["ins_many_out"] == {**rows["ins_core_out"], "id": "ins_many_out"}
    assert rows["ins_many"]["secret_inputs"] == {"password": "s3cr3t"}
    assert ("ins_many" in null_outputs) == ("ins_core" in null_outputs), "a None stored alike both ways"
    # SQL NULLs (no JSON column) among the rows, and the proof that PostgreSQL took the one-statement form.
    events = Prepared(task_events.insert())
    event = {"task_id": "tsk_1", "created_at_ms": 5, "kind": "status", "status": "running", "local_name": None}
    event |= {"entity_type": None, "action": None, "entity_id": None, "href": None, "message": "m"}
    with boxed.write() as conn:
        conn.execute(task_events.insert(), [{**event, "seq": 1}])
        events.many(conn, [{**event, "seq": 2}, {**event, "seq": 3, "href": "/x", "message": None}])
        if not boxed.is_sqlite:
            assert _unnest_form(events._compile(conn.dialect, {**event, "seq": 2})) is not None
    with boxed.read() as conn:
        found = {row.seq: dict(row._mapping) for row in conn.execute(sa.select(task_events))}
    assert found[2] == {**found[1], "seq": 2}
    assert found[3] == {**found[1], "seq": 3, "href": "/x", "message": None}


def test_updates_report_their_row_count_and_join_the_callers_transaction(boxed: Database) -> None:
    with boxed.write() as conn:
        _INSERT_ENTITY.rowcount(conn, _entity("ent_1"))
    with pytest.raises(RuntimeError), boxed.write() as conn:
        assert _RENAME.rowcount(conn, {"entity_id": "ent_1", "s": "renamed"}) == 1
        raise RuntimeError("roll back")
    with boxed.write() as conn:
        assert _RENAME.rowcount(conn, {"entity_id": "ent_missing", "s": "x"}) == 0
    with boxed.read() as conn:
        row = _ENTITY.first(conn, {"id": "ent_1"})
    assert row is not None and row["slug"] == "ent_1", "the rolled-back update left nothing"
    # Without a transaction of the caller's, one is begun (as conn.execute's autobegin does) and ends with it.
    with boxed.engine.connect() as conn:
        _RENAME.rowcount(conn, {"entity_id": "ent_1", "s": "uncommitted"})
    with boxed.engine.connect() as conn:
        _RENAME.rowcount(conn, {"entity_id": "ent_1", "s": "committed"})
        conn.commit()
    with boxed.read() as conn:
        assert _ENTITY.scalar(conn, {"id": "ent_1"}) == "ent_1"
        assert (_ENTITY.first(conn, {"id": "ent_1"}) or {})["slug"] == "committed"


def test_driver_errors_are_raised_as_sqlalchemys(boxed: Database) -> None:
    with boxed.write() as conn:
        _INSERT_ENTITY.rowcount(conn, _entity("ent_1"))
    with pytest.raises(sa.exc.IntegrityError) as raised, boxed.write() as conn:
        _INSERT_ENTITY.rowcount(conn, _entity("ent_1"))
    assert "s3cr3t" not in str(raised.value), "parameters are never shown: they can be secrets"
    with boxed.write() as conn:
        _INSERT_ENTITY.many(conn, [_entity("ent_2"), _entity("ent_3")])
    with boxed.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(entities)).scalar() == 3


def test_statements_sent_together_commit_together_or_not_at_all(boxed: Database) -> None:
    with boxed.write() as conn:
        _INSERT_ENTITY.run(conn, _entity("ent_1"))
        with sent_together(conn):
            _INSERT_ENTITY.run(conn, _entity("ent_2"))
            # A count read inside waits for the statements sent before it, and counts their rows.
            assert _RENAME.rowcount(conn, {"entity_id": "ent_2", "s": "renamed"}) == 1
            _INSERT_ENTITY.run(conn, _entity("ent_3"))
        assert not conn.in_transaction(), "the block ends the transaction"
        assert not any("pipeline" in str(key) for key in conn.info), "the pipeline is not kept past the block"
    with boxed.read() as conn:
        assert [row["slug"] for row in map(_entity_of(conn), ["ent_1", "ent_2", "ent_3"])] == [
            "ent_1",
            "renamed",
            "ent_3",
        ]
    # The second insert fails (its key is taken): nothing of the transaction stays, the statements before the
    # block included, and the error is SQLAlchemy's, without the parameters.
    with pytest.raises(sa.exc.IntegrityError) as raised, boxed.write() as conn:
        _INSERT_ENTITY.run(conn, _entity("ent_4"))
        with sent_together(conn):
            _INSERT_ENTITY.run(conn, _entity("ent_5"))
            _INSERT_ENTITY.run(conn, _entity("ent_1"))
            _INSERT_ENTITY.run(conn, _entity("ent_6"))
    assert "s3cr3t" not in str(raised.value)
    with boxed.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(entities)).scalar() == 3
    # An exception of the caller's inside the block: nothing is committed.
    with pytest.raises(RuntimeError), boxed.write() as conn, sent_together(conn):
        _INSERT_ENTITY.run(conn, _entity("ent_7"))
        raise RuntimeError("changed my mind")
    with boxed.read() as conn:
        assert _ENTITY.first(conn, {"id": "ent_7"}) is None
    # The connection works as before afterwards (it left pipeline mode).
    with boxed.write() as conn:
        conn.execute(entities.insert(), _entity("ent_8"))
        assert conn.execute(sa.select(sa.func.count()).select_from(entities)).scalar() == 4


def _entity_of(conn: sa.Connection) -> Any:
    def read(entity_id: str) -> dict[str, Any]:
        row = _ENTITY.first(conn, {"id": entity_id})
        assert row is not None, entity_id
        return row

    return read


def test_a_statement_whose_sql_depends_on_its_parameters_is_refused(boxed: Database) -> None:
    with boxed.read() as conn, pytest.raises(TypeError, match="expanding IN"):
        _IN_ANY.rows(conn, {"ids": ["ent_1"]})


def test_each_engine_encrypts_with_its_own_key(tmp_path: Path) -> None:
    first = Database(f"sqlite:///{tmp_path}/a.db", secret_box=SecretBox.from_text(generate_key()))
    second = Database(f"sqlite:///{tmp_path}/b.db", secret_box=SecretBox.from_text(generate_key()))
    try:
        for database in (first, second):
            database.migrate()
            with database.write() as conn:
                _INSERT_ENTITY.rowcount(conn, _entity("ent_1"))
        for database in (first, second):
            with database.read() as conn:
                assert (conn.execute(sa.select(entities.c.secret_attributes)).scalar()) == {"data": "s3cr3t"}
    finally:
        first.dispose()
        second.dispose()


def test_a_core_statement_inside_sent_together_is_refused(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    # PostgreSQL only: on SQLite there is no pipeline, and every statement inside runs at once.
    database = Database(backend_url(request, "postgresql", tmp_path), secret_box=SecretBox.from_text(generate_key()))
    database.migrate()
    try:
        with pytest.raises(RuntimeError, match="only Prepared"), database.write() as conn, sent_together(conn):
            _INSERT_ENTITY.run(conn, _entity("ent_1"))
            conn.execute(sa.select(sa.func.count()).select_from(entities))
        with database.read() as conn:
            assert _ENTITY.first(conn, {"id": "ent_1"}) is None
    finally:
        database.dispose()


def test_answers_of_statements_sent_together_are_read_after_the_block(boxed: Database) -> None:
    with boxed.write() as conn:
        _INSERT_ENTITY.run(conn, _entity("ent_1"))
    on_postgresql = boxed.engine.dialect.name == "postgresql"
    with boxed.write() as conn:
        with answered_together(conn):
            renamed = _RENAME.rowcount_later(conn, {"entity_id": "ent_1", "s": "renamed"})
            missing = _RENAME.rowcount_later(conn, {"entity_id": "ent_missing", "s": "x"})
            found = _ENTITY.first_later(conn, {"id": "ent_1"}).then(lambda row: row and row["slug"])
            nothing = _ENTITY.first_later(conn, {"id": "ent_missing"})
            # On PostgreSQL the statements are only queued here: one round trip when the block ends.
            driver: Any = conn.connection.dbapi_connection
            assert bool(on_postgresql and driver.info.pipeline_status) == on_postgresql
        assert (renamed.get(), missing.get(), found.get(), nothing.get()) == (1, 0, "renamed", None)
        assert conn.in_transaction(), "the block leaves the transaction to its caller"
    with boxed.read() as conn:
        assert _entity_of(conn)("ent_1")["slug"] == "renamed"
    # An error of one statement is SQLAlchemy's, raised by the block at the latest; the transaction rolls back.
    with pytest.raises(sa.exc.IntegrityError), boxed.write() as conn, answered_together(conn):
        _RENAME.rowcount_later(conn, {"entity_id": "ent_1", "s": "lost"})
        _INSERT_ENTITY.rowcount_later(conn, _entity("ent_1"))
    with boxed.read() as conn:
        assert _entity_of(conn)("ent_1")["slug"] == "renamed"


def test_pipelined_blocks_nest_count_inside_and_leave_nothing_behind(boxed: Database) -> None:
    with boxed.write() as conn:
        _INSERT_ENTITY.run(conn, _entity("ent_1"))
    with boxed.write() as conn:
        with answered_together(conn):
            early = _RENAME.rowcount_later(conn, {"entity_id": "ent_1", "s": "early"})
            assert early.get() == 1, "a count read inside the block waits for its answer"
            with answered_together(conn):
                inner = _RENAME.rowcount_later(conn, {"entity_id": "ent_1", "s": "inner"})
            assert _RENAME.rowcount(conn, {"entity_id": "ent_1", "s": "outer"}) == 1  # still syncs after the inner
        assert inner.get() == 1
        assert not any("pipeline" in str(key) for key in conn.info), "no pipeline is kept past the blocks"
        with answered_together(conn), sent_together(conn):
            _RENAME.run(conn, {"entity_id": "ent_1", "s": "committed"})
        assert not any("pipeline" in str(key) for key in conn.info)
    with boxed.read() as conn:
        assert _entity_of(conn)("ent_1")["slug"] == "committed"


def test_a_connection_lost_inside_a_pipelined_block_is_reported_as_such(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    database = Database(backend_url(request, "postgresql", tmp_path))
    database.migrate()
    try:
        with pytest.raises(sa.exc.OperationalError), database.write() as conn:
            _ENTITY.first(conn, {"id": "ent_none"})
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with database.engine.connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend)})")
            with answered_together(conn):
                _ENTITY.first_later(conn, {"id": "ent_none"})
    finally:
        database.dispose()
