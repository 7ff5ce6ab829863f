"""RFC 3339 rendering of millisecond timestamps."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from zonecat.clock import rfc3339


def _by_datetime(millis: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=millis)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.mark.parametrize(
    "millis",
    [0, 1, 999, 1000, -1, -1000, -1001, 951_782_400_000, 1_764_345_599_999, 1_764_345_600_000, 4_102_444_800_000],
)
def test_edges_match_datetime(millis: int) -> None:
    assert rfc3339(millis) == _by_datetime(millis)


def test_random_instants_match_datetime() -> None:
    generator = random.Random(3339)
    for _ in range(20_000):
        millis = generator.randrange(-2_000_000_000_000, 8_000_000_000_000)
        assert rfc3339(millis) == _by_datetime(millis)


def test_known_value_and_none() -> None:
    assert rfc3339(1_764_345_600_123) == "2025-11-28T16:00:00.123Z"
    assert rfc3339(None) is None
