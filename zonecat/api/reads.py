"""Hot reads for async routes: on the event loop where that is cheaper than a thread, in the thread pool otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from zonecat.api.context import AppContext
from zonecat.store import hot
from zonecat.store.direct import DirectReader, DirectReads, WouldWait

T = TypeVar("T")


def _pooled(reads: DirectReads, work: Callable[[DirectReader], T], snapshot: bool) -> T:
    with reads.pooled(snapshot) as reader:
        return work(reader)


async def read_direct(ctx: AppContext, work: Callable[[DirectReader], T], *, snapshot: bool = True) -> T:
    """``work`` in one read-only snapshot through the driver (``zonecat.store.direct``).

    On SQLite it runs on the event loop: a handful of indexed point reads take tens of microseconds, while the hop to
    a pool thread and back costs about 200 µs and contends for the GIL with every other thread. ``work`` must stay
    that small (no page scans, no unbounded rendering). On PostgreSQL, or when SQLite would make the loop wait for a
    lock, it runs in the thread pool. ``snapshot=False``: ``work``'s statements need no common moment, and each sees
    the database as it is when it runs (no BEGIN and COMMIT; see ``DirectReads.pooled``)."""
    reads = ctx.db.direct
    if reads.loop_capable:
        try:
            with reads.on_loop(snapshot) as reader:
                return work(reader)
        except WouldWait:
            pass
    return await run_in_threadpool(_pooled, reads, work, snapshot)


# The key in a request's state of what ``KeptPolls`` (``zonecat.api.kept_polls``) read for a poll it passed on.
READ_BEFORE = "zonecat.poll_read"


def read_before(scope: Scope, token_hash: str, zone_id: str, task_id: str) -> hot.Poll | None:
    """What ``KeptPolls`` read for this very poll (same token, zone and task) before passing it on, if it did. Reads
    without a snapshot see the database as it is when they run: the read made a moment ago is one of them."""
    found = scope.get("state", {}).get(READ_BEFORE)
    if found is None or found[:3] != (token_hash, zone_id, task_id):
        return None
    poll: hot.Poll = found[3]
    return poll
