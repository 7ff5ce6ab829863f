"""Encryption at rest of write-only values: the ``SecretBox``, its key file, and the encrypted columns."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import TEST_SECRET_BOX, TEST_SECRET_KEY
from tests.pg import backend_url
from tests.store.test_store import entity_row, install_row, zone
from zonecat.domain.paging import PageRequest
from zonecat.engine.bootstrap import open_database
from zonecat.errors import ZonecatError
from zonecat.settings import Settings
from zonecat.store import entities as entity_store
from zonecat.store import installs as install_store
from zonecat.store.database import Database
from zonecat.store.secrets import (
    KEY_FILE_NAME,
    SecretBox,
    SecretKeyInvalid,
    SecretKeyMismatch,
    SecretKeyMissing,
    SecretUnreadable,
    generate_key,
    is_sealed,
    load_key,
    names_set,
)

SECRET = "hunter2-\u00e9-CLIENT-SECRET-at-rest"
VALUES: list[Any] = [{"client_secret": SECRET}, {"data": {"type": "token", "token": SECRET}}, [1, "two", None], "s", 3]


# -- SecretBox ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", VALUES)
def test_round_trip(value: Any) -> None:
    box = SecretBox.from_text(generate_key())
    token = box.encrypt(value, "p")
    assert token.startswith(f"zcs1.{box.key_id}.")
    assert SECRET not in token
    assert box.decrypt(token, "p") == value


def test_every_encryption_is_fresh() -> None:
    box = SecretBox.from_text(generate_key())
    assert box.encrypt({"a": SECRET}) != box.encrypt({"a": SECRET})  # a new nonce each time


def test_the_key_never_shows() -> None:
    box = SecretBox.from_text(TEST_SECRET_KEY)
    assert TEST_SECRET_KEY not in repr(box)
    assert TEST_SECRET_KEY not in repr(Settings(secret_key=TEST_SECRET_KEY))


def _flip(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


@pytest.mark.parametrize("where", [-1, -10, 20, 30])
def test_tampered_ciphertext_is_refused(where: int) -> None:
    box = SecretBox.from_text(generate_key())
    token = box.encrypt({"client_secret": SECRET})
    with pytest.raises(SecretUnreadable) as caught:
        box.decrypt(_flip(token, where))
    assert isinstance(caught.value, ZonecatError)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("mangle", [lambda t: t[:25], lambda t: t + "AAAA", lambda t: "zcs0" + t[4:], lambda t: "x"])
def test_malformed_token_is_refused(mangle: Any) -> None:
    box = SecretBox.from_text(generate_key())
    with pytest.raises(SecretUnreadable):
        box.decrypt(mangle(box.encrypt({"k": SECRET})))


def test_token_of_another_column_is_refused() -> None:
    box = SecretBox.from_text(generate_key())
    with pytest.raises(SecretUnreadable):
        box.decrypt(box.encrypt({"k": SECRET}, "installs.secret_inputs"), "entities.secret_attributes")


def test_wrong_key_is_refused_clearly() -> None:
    mine, theirs = SecretBox.from_text(generate_key()), SecretBox.from_text(generate_key())
    token = theirs.encrypt({"k": SECRET})
    with pytest.raises(SecretKeyMismatch, match=theirs.key_id):
        mine.decrypt(token)
    # A token whose key id was rewritten to match is still refused: the key id is authenticated.
    relabelled = token.replace(theirs.key_id, mine.key_id, 1)
    with pytest.raises(SecretUnreadable):
        mine.decrypt(relabelled)


@pytest.mark.parametrize("text", ["", "short", "a" * 44, "!" * 44, TEST_SECRET_KEY[:-4]])
def test_invalid_key_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(SecretKeyInvalid) as caught:
        SecretBox.from_text(text)
    assert "ZONECAT_SECRET_KEY" in str(caught.value)
    if text:
        assert text not in str(caught.value)


# -- the key file ------------------------------------------------------------------------------------------------


def test_key_file_is_generated_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert load_key(None, data_dir, create=False) is None
    first = load_key(None, data_dir)
    path = data_dir / KEY_FILE_NAME
    assert first is not None and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_key(None, data_dir)
    assert second is not None and second.key_id == first.key_id
    assert second.decrypt(first.encrypt({"k": SECRET})) == {"k": SECRET}
    assert [p.name for p in data_dir.iterdir()] == [KEY_FILE_NAME]  # nothing left aside


def test_environment_key_wins_over_the_file(tmp_path: Path) -> None:
    assert load_key(None, tmp_path) is not None
    box = load_key(TEST_SECRET_KEY, tmp_path)
    assert box is not None and box.key_id == TEST_SECRET_BOX.key_id


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        box = load_key(None, tmp_path)
        assert box is not None
        ids.append(box.key_id)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1


def test_readable_key_file_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text(TEST_SECRET_KEY + "\n")
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="zonecat.secrets"):
        box = load_key(None, tmp_path)
    assert box is not None and box.key_id == TEST_SECRET_BOX.key_id
    assert "chmod 600" in caplog.text
    assert TEST_SECRET_KEY not in caplog.text


def test_settings_read_the_key_and_open_database_generates_one(tmp_path: Path) -> None:
    assert Settings.from_env({"ZONECAT_SECRET_KEY": TEST_SECRET_KEY}).secret_key == TEST_SECRET_KEY
    assert Settings.from_env({}).secret_key is None
    db = open_database(Settings(data_dir=tmp_path))
    try:
        assert db.secret_box is not None
        assert (tmp_path / KEY_FILE_NAME).exists()
        assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600
    finally:
        db.dispose()
    with pytest.raises(SecretKeyInvalid):
        open_database(Settings(data_dir=tmp_path, secret_key="not-a-key"))


# -- the encrypted columns, on every backend ---------------------------------------------------------------------

BACKENDS = ["sqlite", "postgresql"]
# The raw columns, without the encrypting type: what is really stored.
RAW_ENTITIES = sa.table("entities", sa.column("id", sa.String), sa.column("secret_attributes", sa.JSON))
RAW_INSTALLS = sa.table("installs", sa.column("id", sa.String), sa.column("secret_inputs", sa.JSON))


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return backend_url(request, request.param, tmp_path)


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(url, secret_box=TEST_SECRET_BOX)
    database.migrate()
    yield database
    database.dispose()


def _raw(db: Database, table: Any, column: str, row_id: str) -> Any:
    with db.read() as conn:
        value = conn.execute(sa.select(table.c[column]).where(table.c.id == row_id)).scalar_one()
    return json.loads(value) if isinstance(value, str) else value


def test_entity_secrets_are_encrypted_at_rest_and_read_sealed(db: Database) -> None:
    zone_id = zone(db)
    row = {**entity_row(zone_id, "https://idp.example"), "secret_attributes": {"client_secret": SECRET}}
    other = {**entity_row(zone_id, "https://idp2.example"), "secret_attributes": {"client_secret": SECRET + "2"}}
    with db.write() as conn:
        entity_store.insert_entity(conn, row)
        assert entity_store.insert_entity_if_absent(conn, other)
    for entity in (row, other):
        stored = _raw(db, RAW_ENTITIES, "secret_attributes", entity["id"])
        assert is_sealed(stored) and SECRET not in json.dumps(stored)
        assert stored["set"] == ["client_secret"] and names_set(stored) == {"client_secret"}
    # Every read leaves them sealed (the API never returns them); the code that needs a value opens it.
    with db.write() as conn:
        locked = entity_store.get_entity(conn, zone_id, row["id"], lock=True)
    with db.read() as conn:
        got = entity_store.get_entity(conn, zone_id, row["id"])
        found = entity_store.by_natural_key(conn, zone_id, "provider", "https://idp2.example")
        page = entity_store.list_entities(conn, zone_id, PageRequest(limit=10)).items
        by_id = list(entity_store.entities_by_ids(conn, [row["id"], other["id"]]).values())
    opened = {}
    for read in (got, locked, found, *page, *by_id):
        assert read is not None and is_sealed(read["secret_attributes"]) and SECRET not in json.dumps(read)
        opened[read["id"]] = entity_store.unseal_secret_attributes(db.engine.dialect, read["secret_attributes"])
    assert opened == {row["id"]: {"client_secret": SECRET}, other["id"]: {"client_secret": SECRET + "2"}}
    with db.write() as conn:
        entity_store.update_entity(conn, row["id"], {"secret_attributes": {"client_secret": "rotated-" + SECRET}})
    rotated = _raw(db, RAW_ENTITIES, "secret_attributes", row["id"])
    assert "rotated" not in json.dumps(rotated)
    assert entity_store.unseal_secret_attributes(db.engine.dialect, rotated) == {"client_secret": "rotated-" + SECRET}


def test_names_set_of_every_stored_form() -> None:
    token = SecretBox.from_text(generate_key()).encrypt({"a": 1}, "p")
    assert names_set({"enc": token, "set": ["a"]}) == {"a"}
    assert names_set({"enc": token}) is None  # sealed before the names were kept: unknown without opening it
    assert names_set({"a": 1, "b": None}) == {"a"}  # plaintext, from before encryption at rest
    assert names_set({"enc": "not-a-token"}) == {"enc"}  # a plaintext value that happens to be called "enc"
    assert names_set({}) == frozenset() and names_set(None) == frozenset()


def test_install_secret_inputs_are_encrypted_at_rest(db: Database) -> None:
    zone_id = zone(db)
    row = {**install_row(zone_id), "secret_inputs": {"auth": {"user": "u", "password": SECRET}}}
    with db.write() as conn:
        install_store.insert_install(conn, row)
    assert SECRET not in json.dumps(_raw(db, RAW_INSTALLS, "secret_inputs", row["id"]))
    with db.read() as conn:
        assert install_store.install_by_id(conn, row["id"])["secret_inputs"] == row["secret_inputs"]  # type: ignore[index]
        # The reads that never return them (the API's, a claim's) leave them sealed; the task that uses them opens them.
        read = install_store.get_install(conn, zone_id, row["id"])
        listed = install_store.list_installs(conn, zone_id, PageRequest(limit=10)).items
        claimed = install_store.sealed_install_by_id(conn, row["id"])
    for sealed in (read, *listed, claimed):
        assert sealed is not None and is_sealed(sealed["secret_inputs"]) and SECRET not in json.dumps(sealed)
        assert install_store.unseal_secret_inputs(db.engine.dialect, sealed["secret_inputs"]) == row["secret_inputs"]


def test_empty_secrets_stay_empty(db: Database) -> None:
    zone_id = zone(db)
    row = entity_row(zone_id, "https://plain.example")
    with db.write() as conn:
        entity_store.insert_entity(conn, row)
    assert _raw(db, RAW_ENTITIES, "secret_attributes", row["id"]) == {}


def test_plaintext_rows_from_before_encryption_still_read(db: Database) -> None:
    zone_id = zone(db)
    entity = entity_row(zone_id, "https://legacy.example")
    install = install_row(zone_id)
    with db.write() as conn:
        entity_store.insert_entity(conn, entity)
        install_store.insert_install(conn, install)
        # What a database written by an older zonecat holds: plain JSON in the write-only columns.
        conn.execute(
            RAW_ENTITIES.update()
            .where(RAW_ENTITIES.c.id == entity["id"])
            .values(secret_attributes={"client_secret": SECRET})
        )
        conn.execute(
            RAW_INSTALLS.update().where(RAW_INSTALLS.c.id == install["id"]).values(secret_inputs={"enc": SECRET})
        )
    with db.read() as conn:
        assert entity_store.get_entity(conn, zone_id, entity["id"])["secret_attributes"] == {"client_secret": SECRET}  # type: ignore[index]
        # A write-only input that happens to be called "enc" is not mistaken for a token.
        assert install_store.get_install(conn, zone_id, install["id"])["secret_inputs"] == {"enc": SECRET}  # type: ignore[index]
    # The next write of the row encrypts it.
    with db.write() as conn:
        entity_store.update_entity(conn, entity["id"], {"secret_attributes": {"client_secret": SECRET}})
    assert is_sealed(_raw(db, RAW_ENTITIES, "secret_attributes", entity["id"]))


def test_another_key_or_no_key_cannot_open_but_can_read(db: Database, url: str) -> None:
    zone_id = zone(db)
    row = {**entity_row(zone_id, "https://idp.example"), "secret_attributes": {"client_secret": SECRET}}
    with db.write() as conn:
        entity_store.insert_entity(conn, row)
    for box, error in ((SecretBox.from_text(generate_key()), SecretKeyMismatch), (None, SecretKeyMissing)):
        other = Database(url, secret_box=box)
        try:
            with other.read() as conn:
                read = entity_store.get_entity(conn, zone_id, row["id"])
            assert read is not None and names_set(read["secret_attributes"]) == {"client_secret"}
            with pytest.raises(error) as caught:
                entity_store.unseal_secret_attributes(other.engine.dialect, read["secret_attributes"])
            assert SECRET not in str(caught.value)
            # Without a key nothing secret can be written either (it would be stored in plaintext).
            if box is None:
                with pytest.raises(sa.exc.StatementError) as refused, other.write() as conn:
                    entity_store.update_entity(conn, row["id"], {"secret_attributes": {"client_secret": SECRET}})
                assert isinstance(refused.value.orig, SecretKeyMissing)
                assert SECRET not in str(refused.value)
        finally:
            other.dispose()
