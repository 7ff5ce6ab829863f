"""What every route needs: the database, the settings, the worker to wake, the rate limiter."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zonecat import errors
from zonecat.api.rendered import RenderedTasks
from zonecat.settings import Settings
from zonecat.store.database import Database


class RateLimiter:
    """A token bucket per API token: ``rate`` requests a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one request of ``key``'s allowance, or raise ``RateLimited`` with the wait until the next."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise errors.RateLimited(
                    (1.0 - tokens) / self.rate,
                    f"rate limit of {self.rate:g} requests/s (burst {self.burst}) exceeded for this token",
                )
            self._buckets[key] = (tokens - 1.0, now)


@dataclass
class AppContext:
    db: Database
    settings: Settings
    limiter: RateLimiter
    wake_worker: Callable[[], None] = lambda: None
    organization_id: str = "default"
    shutting_down: threading.Event = field(default_factory=threading.Event)
    rendered_tasks: RenderedTasks = field(default_factory=RenderedTasks)
