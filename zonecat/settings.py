"""Configuration: every ``ZONECAT_*`` variable read once into a frozen ``Settings``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Every tunable of a zonecat process. Build it with ``from_env`` and pass it down; nothing else reads
    the environment."""

    data_dir: Path = Path(".zonecat")
    database_url: str = ""
    catalog_dir: Path | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    bootstrap_token: str | None = field(default=None, repr=False)
    # urlsafe base64 of 32 bytes; unset: ``<data_dir>/secret.key``, generated on first start (zonecat.store.secrets)
    secret_key: str | None = field(default=None, repr=False)
    max_body_bytes: int = 1024 * 1024
    max_inputs_bytes: int = 64 * 1024
    rate_limit_per_second: float = 500.0
    rate_limit_burst: int = 1000
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 1.0
    log_level: str = "INFO"
    database_wait_seconds: float = 30.0
    run_worker: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("ZONECAT_DATA_DIR") or ".zonecat")
        catalog = env.get("ZONECAT_CATALOG_DIR")
        return cls(
            data_dir=data_dir,
            database_url=env.get("ZONECAT_DATABASE_URL", ""),
            catalog_dir=Path(catalog) if catalog else None,
            host=env.get("ZONECAT_HOST") or DEFAULT_HOST,
            port=_int(env, "ZONECAT_PORT", DEFAULT_PORT),
            bootstrap_token=env.get("ZONECAT_BOOTSTRAP_TOKEN") or None,
            secret_key=env.get("ZONECAT_SECRET_KEY") or None,
            max_body_bytes=_int(env, "ZONECAT_MAX_BODY_BYTES", 1024 * 1024),
            max_inputs_bytes=_int(env, "ZONECAT_MAX_INPUTS_BYTES", 64 * 1024),
            rate_limit_per_second=_float(env, "ZONECAT_RATE_LIMIT", 500.0),
            rate_limit_burst=_int(env, "ZONECAT_RATE_LIMIT_BURST", 1000),
            lease_seconds=_float(env, "ZONECAT_LEASE_SECONDS", 30.0),
            heartbeat_seconds=_float(env, "ZONECAT_HEARTBEAT_SECONDS", 5.0),
            poll_seconds=_float(env, "ZONECAT_POLL_SECONDS", 1.0),
            log_level=env.get("ZONECAT_LOG_LEVEL", "INFO").upper(),
            database_wait_seconds=_float(env, "ZONECAT_DATABASE_WAIT_SECONDS", 30.0),
        )

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL: ``ZONECAT_DATABASE_URL`` or the SQLite file in the data directory."""
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://"):
                return "postgresql+psycopg://" + url[len("postgresql://") :]
            if url.startswith("postgres://"):
                return "postgresql+psycopg://" + url[len("postgres://") :]
            return url
        return f"sqlite:///{(self.data_dir / 'zonecat.db').resolve()}"
