"""The short crash campaign of `make test` (the long one is `make crash`)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.campaigns.crash import run_campaign

SEED = int(os.environ.get("ZONECAT_CRASH_SEED", "20261128"))


def test_twenty_kills_leave_every_task_terminal_and_the_store_consistent(tmp_path: Path) -> None:
    report = run_campaign(SEED, kills=20, packages=8, data_dir=tmp_path)
    assert report.kills == 20
    assert report.installs > 0 and report.completed > 0
    assert report.violations == [], f"{report.summary()}: {report.violations}"
