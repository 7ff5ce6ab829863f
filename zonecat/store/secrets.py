"""Encryption at rest of write-only values: provider ``client_secret``, secret ``data``, write-only install inputs.

A ``SecretBox`` seals a JSON value with AES-256-GCM into a text token::

    zcs1.<key id>.<urlsafe base64 of nonce (12 bytes) + ciphertext + tag>

The key id is the first 8 hex digits of the SHA-256 of the key, so a value sealed with another key is reported as
such instead of as "corrupt". The version, the key id and the column (``purpose``) are authenticated data: a token
moved to another column, or edited in any byte, does not open.

The columns that hold write-only values (``entities.secret_attributes``, ``installs.secret_inputs``) have the type
``EncryptedJSON``: SQLAlchemy seals a value on every write and opens it on every read, with the box the
``Database`` attached to its engine, so no store function can forget it and the engine only ever sees plain
dicts. The column itself stays JSON and holds ``{"enc": "<token>", "set": [<names>]}``: ``set`` names, in clear,
the keys whose value is not null, so that a read can report which write-only values are set (``client_secret_set``)
without opening anything (rows sealed before ``set`` existed have only ``enc``). A row written before encryption
existed (a dict that is not that form) reads as the plaintext it is, and is sealed the next time it is written. An
empty dict is stored as ``{}``: it holds no secret.

Reads that never return the values select the column as plain JSON (``sa.type_coerce``) and leave it sealed: only
the code that needs a value opens it, so a key that cannot open a value fails that one use, never a read, a list
or a delete.

The key is ``ZONECAT_SECRET_KEY`` (urlsafe base64 of 32 bytes) or, when that is unset, ``<data dir>/secret.key``,
generated with mode 0600 on first start. Every process of one deployment must use the same key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import secrets
import stat
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from zonecat import errors

log = logging.getLogger("zonecat.secrets")

VERSION = "zcs1"
KEY_FILE_NAME = "secret.key"
KEY_BYTES = 32
_NONCE_BYTES = 12
_MARKER = "enc"
_NAMES = "set"


class SecretError(errors.ZonecatError):
    """A write-only value could not be sealed or opened."""


class SecretKeyInvalid(SecretError):
    """The secret key is not the urlsafe base64 encoding of 32 bytes."""


class SecretKeyMissing(SecretError):
    """No secret key is configured, so write-only values can be neither stored nor read."""


class SecretUnreadable(SecretError):
    """A stored write-only value cannot be decrypted: it was tampered with or is corrupt."""


class SecretKeyMismatch(SecretUnreadable):
    """A stored write-only value was encrypted with a different secret key."""


def generate_key() -> str:
    """A new key in the form ``ZONECAT_SECRET_KEY`` takes."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def decode_key(text: str, source: str = "ZONECAT_SECRET_KEY") -> bytes:
    """The 32 key bytes of ``text``; raises ``SecretKeyInvalid`` (naming ``source``, never the text) otherwise."""
    stripped = text.strip()
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise SecretKeyInvalid(
            f"{source} must be the urlsafe base64 encoding of {KEY_BYTES} random bytes; generate one with "
            "`python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`"
        )
    return raw


class SecretBox:
    """Seals JSON values under one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretKeyInvalid(f"a secret key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    @classmethod
    def from_text(cls, text: str, source: str = "ZONECAT_SECRET_KEY") -> SecretBox:
        return cls(decode_key(text, source))

    def encrypt(self, value: Any, purpose: str = "") -> str:
        """The token of the JSON value ``value``; ``purpose`` must be given again to decrypt it."""
        plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, self._aad(self.key_id, purpose))
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii").rstrip("=")
        return f"{VERSION}.{self.key_id}.{body}"

    def decrypt(self, token: str, purpose: str = "") -> Any:
        """The value sealed in ``token``; raises ``SecretUnreadable`` (or ``SecretKeyMismatch``) if it does not
        open. The message names neither the token nor the value."""
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] != VERSION:
            raise SecretUnreadable("a stored write-only value is not a zonecat secret token")
        key_id, body = parts[1], parts[2]
        if key_id != self.key_id:
            raise SecretKeyMismatch(
                f"a stored write-only value was encrypted with secret key {key_id}, but this process has key "
                f"{self.key_id}; start it with the ZONECAT_SECRET_KEY (or secret.key) that wrote the data"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:
            raise SecretUnreadable() from exc
        if len(raw) < _NONCE_BYTES + 16:
            raise SecretUnreadable()
        try:
            plaintext = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad(key_id, purpose))
        except InvalidTag as exc:
            raise SecretUnreadable() from exc
        return json.loads(plaintext.decode("utf-8"))

    @staticmethod
    def _aad(key_id: str, purpose: str) -> bytes:
        return f"{VERSION}.{key_id}.{purpose}".encode()


# -- the key ---------------------------------------------------------------------------------------------------------


def load_key(env_key: str | None, data_dir: Path, create: bool = True) -> SecretBox | None:
    """The box of ``env_key`` (``ZONECAT_SECRET_KEY``) or else of ``<data_dir>/secret.key``.

    Without either, a new key file is generated (mode 0600) when ``create``; otherwise the answer is None.
    Two processes starting at once on one data directory end with the same key: the file appears atomically
    (written aside, then hard-linked into place), and the loser reads the winner's.
    """
    if env_key:
        return SecretBox.from_text(env_key)
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    return _read_key_file(path)


def _read_key_file(path: Path) -> SecretBox:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("the secret key file is readable by other users; chmod 600 it", extra={"path": str(path)})
    return SecretBox.from_text(path.read_text(encoding="ascii"), source=str(path))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (generate_key() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(aside, path)
    except FileExistsError:
        return  # another process was first: use its key
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
    log.warning(
        "generated a new secret key for write-only values; back it up, and give every process of this deployment "
        "the same key (ZONECAT_SECRET_KEY)",
        extra={"path": str(path)},
    )


# -- the column type -----------------------------------------------------------------------------------------------

# The box of each engine, attached by ``Database``: a dialect instance belongs to exactly one engine.
_BOXES: weakref.WeakKeyDictionary[sa.Dialect, SecretBox] = weakref.WeakKeyDictionary()


def attach(engine: sa.Engine, box: SecretBox | None) -> None:
    """Make ``EncryptedJSON`` columns read and written through ``engine`` use ``box``."""
    if box is None:
        _BOXES.pop(engine.dialect, None)
    else:
        _BOXES[engine.dialect] = box


def _box(dialect: sa.Dialect) -> SecretBox:
    box = _BOXES.get(dialect)
    if box is None:
        raise SecretKeyMissing()
    return box


def is_sealed(value: Any) -> bool:
    """True for the stored form of an encrypted value, ``{"enc": "zcs1.…", "set": [names]}`` (or, sealed by an
    older zonecat, ``{"enc": "zcs1.…"}``)."""
    if not isinstance(value, dict) or not isinstance(value.get(_MARKER), str):
        return False
    names = value.get(_NAMES, [])
    return (
        value[_MARKER].startswith(VERSION + ".")
        and set(value) <= {_MARKER, _NAMES}
        and isinstance(names, list)
        and all(isinstance(name, str) for name in names)
    )


def names_set(stored: Any) -> frozenset[str] | None:
    """The keys whose value is not null in a write-only column's value as stored, sealed or not, without opening
    it; None when that cannot be known without opening it (sealed before the names were kept beside the token)."""
    if is_sealed(stored):
        names = stored.get(_NAMES)
        return None if names is None else frozenset(names)
    if isinstance(stored, dict):
        return frozenset(name for name, item in stored.items() if item is not None)
    return frozenset()


class EncryptedJSON(sa.types.TypeDecorator[Any]):
    """A JSON column whose value is stored as ``{"enc": <token>}``; see the module docstring."""

    impl = sa.JSON
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None or value == {}:
            return value
        sealed: dict[str, Any] = {_MARKER: _box(dialect).encrypt(value, self.purpose)}
        if isinstance(value, dict):
            sealed[_NAMES] = sorted(name for name, item in value.items() if item is not None)
        return sealed

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if not is_sealed(value):
            return value  # written before encryption at rest: plaintext
        return _box(dialect).decrypt(value[_MARKER], self.purpose)


def sealed_columns(table: sa.Table, name: str) -> tuple[sa.ColumnElement[Any], ...]:
    """Every column of ``table``, its ``EncryptedJSON`` column ``name`` read as the JSON it is stored as (sealed):
    for the reads that never return the values."""
    return tuple(sa.type_coerce(column, sa.JSON).label(name) if column.name == name else column for column in table.c)


def unseal(column: sa.Column[Any], dialect: sa.Dialect, stored: Any) -> Any:
    """The value of the ``EncryptedJSON`` ``column`` read sealed (``sealed_columns``), opened (raises the box's
    errors: a missing or different key, an unreadable value)."""
    column_type = column.type
    assert isinstance(column_type, EncryptedJSON)
    return column_type.process_result_value(stored, dialect)
