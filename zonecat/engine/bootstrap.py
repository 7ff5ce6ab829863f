"""Start-up: schema, the organization-admin token, the global catalog."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Collection

import sqlalchemy as sa

from zonecat.clock import now_ms
from zonecat.domain import workers
from zonecat.engine.access import generate_token, hash_token
from zonecat.engine.packages import load_global_catalog
from zonecat.ids import new_id
from zonecat.settings import Settings
from zonecat.store import tasks as task_store
from zonecat.store import zones as zone_store
from zonecat.store.database import Database
from zonecat.store.schema import tokens
from zonecat.store.secrets import SecretBox, load_key

log = logging.getLogger("zonecat.bootstrap")

ORGANIZATION_ID = "default"


def open_secret_box(settings: Settings, create: bool = True) -> SecretBox | None:
    """The box of ``ZONECAT_SECRET_KEY``, else of ``<data_dir>/secret.key`` (generated there when ``create``)."""
    return load_key(settings.secret_key, settings.data_dir, create=create)


def open_database(settings: Settings) -> Database:
    """Open the database; on the SQLite default create and migrate it, elsewhere insist it is migrated."""
    db = Database(settings.effective_database_url, secret_box=open_secret_box(settings))
    if db.is_sqlite:
        db.migrate()
    else:
        db.ensure_current()
    return db


def ensure_admin_token(db: Database, bootstrap_token: str | None) -> str | None:
    """Make sure an organization-admin token exists. Returns a newly generated secret to print once, else None."""
    with db.write() as conn:
        if bootstrap_token:
            found = zone_store.token_by_hash(conn, hash_token(bootstrap_token))
            if found is None:
                _insert_admin(conn, bootstrap_token, "bootstrap (ZONECAT_BOOTSTRAP_TOKEN)")
            elif found["revoked_at_ms"] is not None:
                # A revoked token stays revoked (it may have leaked): say so, or every request gets a 401 unexplained.
                log.warning(
                    "ZONECAT_BOOTSTRAP_TOKEN names a token that was revoked; it stays revoked. To get an "
                    "organization-admin token, start with another ZONECAT_BOOTSTRAP_TOKEN, or without one while no "
                    "admin token is left (one is then generated and printed)",
                    extra={"token_id": found["id"], "admin_tokens_left": _active_admins(conn)},
                )
            return None
        if _active_admins(conn):
            return None
        secret = generate_token()
        _insert_admin(conn, secret, "bootstrap (generated at first start)")
        return secret


def _active_admins(conn: sa.Connection) -> int:
    query = sa.select(sa.func.count()).where(tokens.c.admin.is_(True), tokens.c.revoked_at_ms.is_(None))
    return int(conn.execute(query).scalar_one())


def _insert_admin(conn: sa.Connection, secret: str, name: str) -> None:
    now = now_ms()
    zone_store.insert_token(
        conn,
        {
            "id": new_id("tok", now),
            "organization_id": ORGANIZATION_ID,
            "name": name,
            "token_hash": hash_token(secret),
            "zones": None,
            "read_only": False,
            "admin": True,
            "created_at_ms": now,
            "revoked_at_ms": None,
        },
    )


def boot(settings: Settings, idle_pids: Collection[int] = ()) -> tuple[Database, str | None]:
    """Everything a serving process needs before it answers: returns the database and a new admin secret.
    ``idle_pids``: processes of this host that have not run a worker yet (serve's forked worker process, waiting
    for this boot), whose pid on a lease can only be a former process's (see ``expire_dead_local_leases``)."""
    db = open_database(settings)
    secret = ensure_admin_token(db, settings.bootstrap_token)
    if db.is_sqlite:
        expire_dead_local_leases(db, idle_pids)
    problems = load_global_catalog(db, ORGANIZATION_ID, settings.catalog_dir)
    for problem in problems:
        log.error("catalog problem", extra={"problem": problem})
    return db, secret


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # some other user's process: alive
    # A killed worker process whose parent died too is a zombie until someone reaps it: dead all the same.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def expire_dead_local_leases(db: Database, idle_pids: Collection[int] = ()) -> list[str]:
    """Make the tasks of this host's dead workers claimable now instead of when their lease runs out.

    Called at start-up, before this process runs any worker: a lease held by a worker of this host whose process is
    gone (or that had this very pid, or the pid of one of ``idle_pids``, processes that have not run a worker yet:
    a restarted container often reuses its pids) can never be renewed again, so a ``kill -9`` followed by a restart
    resumes its task at once. Only used on SQLite, whose database is local to one host; a lease of another host, or
    of a live process, is left alone. Returns the ids of the expired leases.
    """
    host = socket.gethostname()
    stale = {os.getpid(), *idle_pids}
    expired: list[str] = []
    with db.write() as conn:
        for lease in task_store.live_leases(conn):
            pid = workers.owner_process(lease["locked_by"], host)
            if pid is None or (pid not in stale and _pid_alive(pid)):
                continue
            if task_store.expire_lease(conn, lease["id"], lease["locked_by"], lease["locked_until_ms"]):
                expired.append(lease["id"])
    for task_id in expired:
        log.info("lease of a dead worker expired at start-up", extra={"task_id": task_id})
    return expired
