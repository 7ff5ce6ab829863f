"""The short API fuzzing campaign of `make test` (the long one is `make fuzz`)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.campaigns.fuzz import run_campaign

SEED = int(os.environ.get("ZONECAT_FUZZ_SEED", "20261128"))
CASES = 300


def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(tmp_path: Path) -> None:
    report = run_campaign(CASES, SEED, tmp_path, log=lambda _: None)
    assert report.cases >= CASES
    assert report.operations > 50
    assert report.real_id_cases > CASES // 4, report.summary()
    assert report.server_errors == 0, f"{report.summary()}\n{report.details()}"
    assert not report.failures, f"{report.summary()}\n{report.details()}"
