"""Hot reads for async routes: on the event loop where that is cheaper than a thread, in the thread pool otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from zonecat.api.context import AppContext
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
