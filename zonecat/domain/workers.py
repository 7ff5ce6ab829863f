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


# The words of a claim's "running" event. ``zonecat.store.tasks`` puts the same pieces together in SQL on PostgreSQL,
# where the claim and its event are one statement.
RELEASED_IT = " released it"
LET_LEASE_EXPIRE = " let its lease expire"


def claimed_by(worker: str) -> str:
    return f"claimed by {worker}"


def resumed_by(worker: str) -> str:
    """The start of a resumption's message; the previous owner, how it left and the attempt follow."""
    return f"resumed by {worker} after "


def claim_message(worker: str, previous_status: str, previous_owner: str | None, released: bool, attempt: int) -> str:
    """What the running event of a claim says: who took the task, and for a resumption from whom and why."""
    if previous_status != "running":
        return claimed_by(worker)
    how = RELEASED_IT if released else LET_LEASE_EXPIRE
    return f"{resumed_by(worker)}{previous_owner}{how} (attempt {attempt})"
