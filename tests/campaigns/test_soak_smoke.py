"""A short run of the soak (`make soak` is the long one): the load loop ends, and nothing answers a 5xx."""

from __future__ import annotations

from pathlib import Path

from tests.campaigns.soak import run_soak


def test_a_short_soak_sees_no_error(tmp_path: Path) -> None:
    report = run_soak(0.25, threads=3, seed=20261128, data_dir=tmp_path)
    assert report.requests > 0 and report.installs > 0
    assert report.server_errors == 0 and report.errors == 0, f"{report.summary()}: {report.samples}"
    assert report.check_violations == []
    assert report.rss_start > 0 and report.rss_end > 0
