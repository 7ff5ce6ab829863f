"""Idempotency rules: replay, conflict, expiry, which header counts."""

from __future__ import annotations

import pytest

from zonecat.domain.idempotency import WINDOW_MS, Decision, Earlier, body_sha, decide, request_key

NOW = 10 * WINDOW_MS


def earlier(sha: str, age_ms: int) -> Earlier:
    return Earlier(body_sha=sha, task_id="tsk_1", created_at_ms=NOW - age_ms)


def test_first_use_of_a_key_is_new() -> None:
    assert decide(None, "a", NOW) is Decision.NEW


def test_the_same_body_within_the_window_replays() -> None:
    assert decide(earlier("a", 0), "a", NOW) is Decision.REPLAY
    assert decide(earlier("a", WINDOW_MS), "a", NOW) is Decision.REPLAY


def test_a_different_body_within_the_window_conflicts() -> None:
    assert decide(earlier("a", 1000), "b", NOW) is Decision.CONFLICT


def test_after_the_window_the_key_is_new_again() -> None:
    assert decide(earlier("a", WINDOW_MS + 1), "a", NOW) is Decision.NEW
    assert decide(earlier("a", WINDOW_MS + 1), "b", NOW) is Decision.NEW


def test_body_hash_ignores_key_order_and_whitespace_but_not_values() -> None:
    assert body_sha({"a": 1, "b": [1, 2]}) == body_sha({"b": [1, 2], "a": 1})
    assert body_sha({"a": 1}) != body_sha({"a": 2})
    assert body_sha(None) != body_sha({})


def test_idempotency_key_header_wins_over_client_request_id() -> None:
    assert request_key({"idempotency-key": "k", "x-client-request-id": "r"}) == "k"
    assert request_key({"x-client-request-id": "r"}) == "r"
    assert request_key({}) is None


@pytest.mark.parametrize("key", ["", "x" * 256])
def test_keys_must_be_1_to_255_characters(key: str) -> None:
    with pytest.raises(ValueError):
        request_key({"idempotency-key": key})
