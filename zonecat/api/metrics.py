"""Prometheus metrics kept in process: request counts and latency, plus task counts read at scrape time."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Final

import sqlalchemy as sa

from zonecat.store.database import Database
from zonecat.store.schema import tasks

BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = defaultdict(int)
        self.bucket_counts = [0] * (len(BUCKETS) + 1)
        self.duration_sum = 0.0
        self.duration_count = 0

    def observe(self, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, str(status))] += 1
            self.duration_sum += seconds
            self.duration_count += 1
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[index] += 1
                    break
            else:
                self.bucket_counts[-1] += 1

    def render(self, db: Database) -> str:
        lines = [
            "# HELP zonecat_http_requests_total HTTP requests served, by method and status.",
            "# TYPE zonecat_http_requests_total counter",
        ]
        with self._lock:
            for (method, status), count in sorted(self.requests.items()):
                lines.append(f'zonecat_http_requests_total{{method="{method}",status="{status}"}} {count}')
            lines += [
                "# HELP zonecat_http_request_duration_seconds Time to serve a request.",
                "# TYPE zonecat_http_request_duration_seconds histogram",
            ]
            cumulative = 0
            for bound, count in zip(BUCKETS, self.bucket_counts, strict=False):
                cumulative += count
                lines.append(f'zonecat_http_request_duration_seconds_bucket{{le="{bound}"}} {cumulative}')
            cumulative += self.bucket_counts[-1]
            lines.append(f'zonecat_http_request_duration_seconds_bucket{{le="+Inf"}} {cumulative}')
            lines.append(f"zonecat_http_request_duration_seconds_sum {self.duration_sum:.6f}")
            lines.append(f"zonecat_http_request_duration_seconds_count {self.duration_count}")
        lines += ["# HELP zonecat_tasks Catalog tasks by operation and status.", "# TYPE zonecat_tasks gauge"]
        with db.read() as conn:
            query = sa.select(tasks.c.operation, tasks.c.status, sa.func.count()).group_by(
                tasks.c.operation, tasks.c.status
            )
            for operation, status, count in conn.execute(query):
                lines.append(f'zonecat_tasks{{operation="{operation}",status="{status}"}} {count}')
        return "\n".join(lines) + "\n"
