"""The scenarios, by id. Each module has ``run(quick: bool) -> Outcome``."""

from __future__ import annotations

from collections.abc import Callable

from bench.report import Outcome
from bench.scenarios import (
    b1_get_task,
    b2_latency,
    b3_throughput,
    b4_workers,
    b5_sizes,
    b6_paging,
    b7_memory,
    b8_bindings,
)

SCENARIOS: dict[str, Callable[[bool], Outcome]] = {
    "B1": b1_get_task.run,
    "B2": b2_latency.run,
    "B3": b3_throughput.run,
    "B4": b4_workers.run,
    "B5": b5_sizes.run,
    "B6": b6_paging.run,
    "B7": b7_memory.run,
    "B8": b8_bindings.run,
}
