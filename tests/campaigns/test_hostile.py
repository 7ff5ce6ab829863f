"""The hostile-input campaign of `make test` (`make hostile` is the full one, with the 10,000-entity install):
every hostile case gets its clear 4xx or its failed task, nothing answers a 5xx, and /healthz keeps answering
throughout. No timing is asserted here; `make hostile` reports the health-check latencies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.campaigns.hostile import CASES, QUIET, Case, Context, HealthMonitor, run_case
from tests.e2e.conftest import Server

QUICK_CASES = [item for item in CASES if not item.slow]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Context, HealthMonitor]]:
    server = Server(Path(tmp_path_factory.mktemp("zonecat-hostile")), env=QUIET)
    monitor = HealthMonitor(server.url)
    try:
        server.start()
        monitor.start()
        ctx = Context(server)
        yield ctx, monitor
        ctx.close()
    finally:
        monitor.stop()
        server.stop()


def params() -> list[object]:
    return [
        pytest.param(
            item, id=item.name, marks=[pytest.mark.xfail(strict=True, reason=item.xfail)] if item.xfail else []
        )
        for item in QUICK_CASES
    ]


@pytest.mark.parametrize("item", params())
def test_hostile_case_gets_a_clear_refusal_and_health_keeps_answering(
    hostile: tuple[Context, HealthMonitor], item: Case
) -> None:
    ctx, monitor = hostile
    checks_before = len(monitor.latencies)
    result = run_case(ctx, item)
    # the server still answers health checks right after the case, and the background checks never failed
    assert httpx.get(ctx.server.url + "/healthz", timeout=10).status_code == 200
    assert monitor.failures == [], monitor.failures[:5]
    deadline = time.monotonic() + 10
    while len(monitor.latencies) <= checks_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(monitor.latencies) > checks_before, "the background health checks stopped"
    assert result.ok, result.outcome
