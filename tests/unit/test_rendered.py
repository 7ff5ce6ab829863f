"""The kept task bodies: bounded by count, by bytes, and by each body's size; the oldest go first."""

from __future__ import annotations

from zonecat.api.rendered import RenderedTasks


def test_the_oldest_bodies_go_first_when_there_are_too_many() -> None:
    kept = RenderedTasks(entries=3, max_body=100, budget=1000)
    for index in range(5):
        kept.put(("task", index), b"x" * 10)
    assert len(kept) == 3 and kept.size == 30
    assert kept.get(("task", 0)) is None and kept.get(("task", 1)) is None
    assert kept.get(("task", 4)) == b"x" * 10


def test_the_byte_budget_holds_and_a_replaced_body_is_counted_once() -> None:
    kept = RenderedTasks(entries=100, max_body=60, budget=100)
    kept.put("a", b"a" * 40)
    kept.put("b", b"b" * 40)
    kept.put("a", b"A" * 50)  # replaced: 40 bytes given back, 50 taken
    assert kept.size == 90 and kept.get("a") == b"A" * 50
    kept.put("c", b"c" * 30)  # over the budget: "b", now the oldest, goes
    assert kept.get("b") is None and kept.size == 80
    assert sorted(key for key in ("a", "b", "c") if kept.get(key) is not None) == ["a", "c"]


def test_a_body_over_the_limit_is_not_kept() -> None:
    kept = RenderedTasks(entries=10, max_body=16, budget=1000)
    kept.put("large", b"y" * 17)
    kept.put("small", b"y" * 16)
    assert kept.get("large") is None and kept.get("small") == b"y" * 16 and kept.size == 16
