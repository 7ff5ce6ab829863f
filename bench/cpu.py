"""Where a run's CPU went, by component (the API, the workers, PostgreSQL, the load generator), from /proc.

B4 is bounded by CPU on the benchmark machine: the API, the workers and PostgreSQL share its two cores, so the
figure that explains a rate is the CPU each component spends per unit of work. ``CpuSplit`` takes the CPU time of
each component at ``start()`` and at ``stop()``.

- A component of processes (``processes``) counts their user + system time, threads included. They must live
  through the window: the CPU of one that exits in it is lost.
- A PostgreSQL server (``postgres``) counts the postmaster, its live children (backends, background processes) and
  the children it has already reaped (its ``cutime + cstime``): backends of connections that closed in the window
  are counted too, the harness's own polling connections included.
- ``this_process`` is the harness itself (its polling, procrastinate's defer); ``its_children`` the children it
  has waited for (wrk, once it ended).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from bench.servers import cpu_seconds, descendants

Reading = Callable[[], float]  # a component's CPU seconds so far


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)


def _seconds(ticks: Iterable[str]) -> float:
    return sum(int(tick) for tick in ticks) / os.sysconf("SC_CLK_TCK")


def _own(pid: int) -> float:
    """utime + stime of a live process (``servers.cpu_seconds``); 0 once it is gone."""
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError):
        return 0.0


def processes(pids: Callable[[], Iterable[int]]) -> Reading:
    """The CPU of the processes ``pids()`` names when read."""
    return lambda: sum(_own(pid) for pid in pids())


def postgres(data_dir: Path) -> Reading:
    """The CPU of the PostgreSQL server whose data directory is ``data_dir``: the postmaster, its live children and
    those it has reaped (utime, stime, cutime, cstime: fields 14 to 17 of the postmaster)."""

    def read() -> float:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
        reaped = _seconds(_stat_fields(postmaster)[11:15])
        return reaped + sum(_own(child) for child in descendants(postmaster))

    return read


def this_process() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def its_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuSplit:
    """CPU seconds by component between ``start()`` and ``stop()``."""

    def __init__(self, components: Mapping[str, Reading]) -> None:
        self.components = dict(components)
        self._started: dict[str, float] = {}

    def start(self) -> None:
        self._started = {name: read() for name, read in self.components.items()}

    def stop(self) -> dict[str, float]:
        return {name: read() - self._started[name] for name, read in self.components.items()}


def per_item_ms(seconds: Mapping[str, float], items: int) -> dict[str, float]:
    """``seconds`` by component as milliseconds per item, with their ``total``."""
    split = {name: round(value / items * 1000, 2) for name, value in seconds.items()}
    split["total"] = round(sum(seconds.values()) / items * 1000, 2)
    return split


def described(split: Mapping[str, float]) -> str:
    """``api 1.8 + workers 2.0 + postgresql 1.7 + …`` (the total left out)."""
    return " + ".join(f"{name} {value:.2f}" for name, value in split.items() if name != "total")
