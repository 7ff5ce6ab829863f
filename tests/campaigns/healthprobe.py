"""GETs /healthz every INTERVAL seconds until killed (or MAX_CHECKS) and writes one line per check to stdout:
``<unix time started> <latency seconds> <status>`` (status 0: the request failed).

Run as a process of its own by ``hostile.HealthMonitor``, so that what it measures is the server and not the
GIL of the campaign's client, which parses multi-megabyte task bodies in between.

`python -m tests.campaigns.healthprobe URL INTERVAL TIMEOUT MAX_CHECKS`
"""

from __future__ import annotations

import sys
import time

import httpx


def main() -> None:
    url, interval, timeout, max_checks = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    with httpx.Client(base_url=url, timeout=timeout) as http:
        for _ in range(max_checks):
            wall, started = time.time(), time.monotonic()
            try:
                status = http.get("/healthz").status_code
            except httpx.HTTPError as exc:
                print(f"# {type(exc).__name__}: {exc}", flush=True)
                status = 0
            elapsed = time.monotonic() - started
            print(f"{wall:.6f} {elapsed:.6f} {status}", flush=True)
            time.sleep(max(0.0, interval - elapsed))


if __name__ == "__main__":
    main()
