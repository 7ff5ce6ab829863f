"""The concurrency campaign of `make test` (replay one with `python -m tests.campaigns.concurrency --seed N`)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.campaigns.concurrency import Report, run_campaign
from tests.pg import PostgresServer

SEED = int(os.environ.get("ZONECAT_CONCURRENCY_SEED", "20261128"))


def assert_sound(report: Report) -> None:
    assert report.installs == 50 and report.deletes > 0 and report.completed > 0
    assert 500 not in report.statuses
    assert report.violations == [], f"{report.summary()}: {report.violations}"


def test_fifty_concurrent_installs_with_deletes_and_unmanaged_churn_on_sqlite(tmp_path: Path) -> None:
    assert_sound(run_campaign(SEED, installs=50, packages=8, data_dir=tmp_path))


def test_fifty_concurrent_installs_with_deletes_and_unmanaged_churn_on_postgresql(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    name = postgres_server.create_database(postgres_server.new_name("concurrency"))
    try:
        report = run_campaign(SEED, installs=50, packages=8, data_dir=tmp_path, database_url=postgres_server.dsn(name))
    finally:
        postgres_server.drop_database(name)
    assert_sound(report)
