"""Benchmarks that start their own servers and print one table: every figure, its target, MET or MISSED.

    python -m bench [SCENARIO ...] [--quick]        (make bench: every scenario at full size)

  B1  GET a task (?redirect=false) under wrk, next to a bare FastAPI app returning the same bytes (the ceiling)
  B2  one install of a 3-entity package, POST to completed: p50 / p99
  B3  sustained installs of a 3-entity package from 8 wrk connections, SQLite, one process: completed installs/s
  B4  installs/s on PostgreSQL with 1, 2, 4 worker processes vs procrastinate no-op jobs/s with as many workers
  B5  install and delete of packages of 10, 100, 1,000 and 10,000 entities: seconds, and t(10k) / t(1k)
  B6  a page of 100 tasks at the start, middle and end of 1,000,000 tasks, after and before cursors
  B7  server RSS over 10,000 installs and deletes: start, half, end, growth in the last half
  B8  CEL bindings and schema validation per entity, zonecat's code vs the bare library calls

--quick makes every scenario small enough for the whole set to finish in a few minutes (B5 without 10,000
entities, B6 with 100,000 tasks, B7 with 1,000 cycles, shorter wrk runs); the rows say so.

Results go to bench/results/latest.json with the machine and versions. Absolute times on a shared machine are
noisy; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from bench import report
from bench.report import Outcome
from bench.scenarios import SCENARIOS
from bench.servers import postgres_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="ids to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole set in a few minutes")
    args = parser.parse_args(argv)
    wanted = [s.upper() for s in args.scenarios] or list(SCENARIOS)
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    started_at = datetime.now(UTC)
    outcomes: dict[str, Outcome | BaseException] = {}
    seconds: dict[str, float] = {}
    for scenario in wanted:
        print(f"{scenario} …", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            outcomes[scenario] = SCENARIOS[scenario](args.quick)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # one broken scenario must not cost the others' figures
            traceback.print_exc()
            outcomes[scenario] = exc
        seconds[scenario] = round(time.perf_counter() - started, 1)
        print(f"{scenario} done in {seconds[scenario]} s", file=sys.stderr, flush=True)

    results: dict[str, Any] = {}
    for scenario, outcome in outcomes.items():
        results[scenario] = {**report.outcome_json(outcome), "seconds": seconds[scenario]}
    document = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "quick": args.quick,
        "scenarios": wanted,
        "machine": report.machine(),
        "versions": report.versions(postgres_version()),
        "results": results,
    }
    path = report.write(document)
    print()
    print(report.table(outcomes))
    print(f"\nwritten to {path}")
    return 1 if any(isinstance(o, BaseException) for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
