"""Wall-clock time as integer Unix milliseconds, and its RFC 3339 rendering."""

from __future__ import annotations

import datetime as dt
import time


def now_ms() -> int:
    return int(time.time() * 1000)


def rfc3339(millis: int | None) -> str | None:
    """``2026-11-28T16:43:39.117Z`` (UTC, milliseconds), or None."""
    if millis is None:
        return None
    moment = dt.datetime.fromtimestamp(millis / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
