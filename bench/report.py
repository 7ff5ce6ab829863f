"""What a scenario returns (figures and checks against targets), the one table, and bench/results/latest.json."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")


@dataclass
class Check:
    """One row of the table: a figure, the target it is held to, and whether it met it (None: no target)."""

    metric: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""

    def figure(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "x":
            return f"{self.value:.2f}x"
        if self.unit == "%":
            return f"{self.value:.1f} %"
        magnitude = abs(self.value)
        text = (
            f"{self.value:,.0f}" if magnitude >= 1000 else f"{self.value:.3g}" if magnitude < 1 else f"{self.value:.1f}"
        )
        return f"{text} {self.unit}".strip()

    def verdict(self) -> str:
        if self.met is None:
            return "info"
        return "MET" if self.met else "MISSED"


def at_least(metric: str, value: float | None, unit: str, bound: float, target: str, note: str = "") -> Check:
    return Check(metric, value, unit, target, None if value is None else value >= bound, note)


def at_most(metric: str, value: float | None, unit: str, bound: float, target: str, note: str = "") -> Check:
    return Check(metric, value, unit, target, None if value is None else value <= bound, note)


def info(metric: str, value: float | None, unit: str, note: str = "") -> Check:
    return Check(metric, value, unit, "", None, note)


@dataclass
class Outcome:
    """A scenario's result: every figure (for the JSON), the table rows, and notes printed under the table."""

    figures: dict[str, Any]
    checks: list[Check]
    notes: list[str] = field(default_factory=list)


# -- the table ---------------------------------------------------------------------------------------------------


def table(outcomes: dict[str, Outcome | BaseException]) -> str:
    header = ("id", "figure", "value", "target", "result", "note")
    rows: list[tuple[str, ...]] = [header]
    for scenario, outcome in outcomes.items():
        if isinstance(outcome, BaseException):
            rows.append((scenario, "scenario failed", "", "", "ERROR", f"{type(outcome).__name__}: {outcome}"[:160]))
            continue
        for check in outcome.checks:
            rows.append((scenario, check.metric, check.figure(), check.target, check.verdict(), check.note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2])]
        cells += [row[3].ljust(widths[3]), row[4].ljust(widths[4]), row[5]]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [f"{scenario}: {note}" for scenario, o in outcomes.items() if isinstance(o, Outcome) for note in o.notes]
    if notes:
        lines += ["", "notes:", *(f"  {note}" for note in notes)]
    return "\n".join(lines)


# -- machine and versions ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu_model = None
    memory_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) * 1024 / 2**30, 1)
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def wrk_version() -> str | None:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return match[1] if match else None


def versions(postgres: str | None) -> dict[str, Any]:
    names = ["zonecat", "fastapi", "starlette", "sqlalchemy", "uvicorn", "pydantic", "procrastinate", "psycopg"]
    found: dict[str, Any] = {name: _version(name) for name in names}
    found["cel-expr-python"] = _version("cel-expr-python")
    found["jsonschema"] = _version("jsonschema")
    found["postgres"] = postgres
    found["wrk"] = wrk_version()
    return found


def write(report: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def outcome_json(outcome: Outcome | BaseException) -> dict[str, Any]:
    if isinstance(outcome, BaseException):
        return {"error": f"{type(outcome).__name__}: {outcome}"}
    return {
        "figures": outcome.figures,
        "checks": [{**asdict(check), "figure": check.figure()} for check in outcome.checks],
        "notes": outcome.notes,
    }
