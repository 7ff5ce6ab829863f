"""Worker identity: ``host:pid:n``, stored in ``tasks.locked_by`` (64 characters, enforced by PostgreSQL)."""

from __future__ import annotations

MAX_WORKER_ID = 64
HOST_IN_WORKER_ID = 32  # room for ":<pid>:<n in hex>" (at most 1 + 7 + 1 + 16)


def worker_id(host: str, pid: int, serial: int) -> str:
    """The id of worker ``serial`` of process ``pid`` on ``host`` (the host name cut so the id fits)."""
    return f"{host[:HOST_IN_WORKER_ID]}:{pid}:{serial:x}"[:MAX_WORKER_ID]


def owner_process(locked_by: str | None, host: str) -> int | None:
    """The pid of the process that holds a lease, when that process runs on ``host``; None otherwise."""
    parts = (locked_by or "").rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host[:HOST_IN_WORKER_ID] or not parts[1].isdigit():
        return None
    return int(parts[1])
