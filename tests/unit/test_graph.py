"""Topological order of the entity graph and how cycles are reported."""

from __future__ import annotations

import time

import pytest

from zonecat.domain.graph import CycleError, topological_order


def test_dependencies_come_first() -> None:
    edges = {"resource": {"provider"}, "provider": set(), "credential": {"resource", "provider"}}
    assert topological_order(edges) == ["provider", "resource", "credential"]


def test_ties_are_broken_by_name_whatever_the_insertion_order() -> None:
    forward = {"b": set(), "a": set(), "d": {"a"}, "c": {"a"}}
    backward = dict(reversed(list(forward.items())))
    assert topological_order(forward) == ["a", "b", "c", "d"]
    assert topological_order(backward) == ["a", "b", "c", "d"]


def test_a_name_that_is_only_a_dependency_is_a_node() -> None:
    assert topological_order({"b": {"a"}}) == ["a", "b"]


def test_empty_graph() -> None:
    assert topological_order({}) == []


def test_two_node_cycle_is_named() -> None:
    with pytest.raises(CycleError) as caught:
        topological_order({"a": {"b"}, "b": {"a"}})
    assert caught.value.cycle == ["a", "b", "a"]
    assert str(caught.value) == "entity graph has a cycle: a → b → a"


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(CycleError) as caught:
        topological_order({"a": set(), "loop": {"loop"}})
    assert caught.value.cycle == ["loop", "loop"]
    assert str(caught.value) == "entity graph has a cycle: loop → loop"


def test_cycle_behind_an_acyclic_prefix_names_only_the_cycle() -> None:
    # "a" depends on the cycle but is not part of it; the report starts at the cycle's smallest name.
    edges = {"a": {"z"}, "z": {"y"}, "y": {"x"}, "x": {"z"}}
    with pytest.raises(CycleError) as caught:
        topological_order(edges)
    assert caught.value.cycle == ["x", "z", "y", "x"]


def test_cycle_report_is_deterministic() -> None:
    edges = {"c": {"a"}, "a": {"b"}, "b": {"c"}}
    messages = set()
    for _ in range(3):
        with pytest.raises(CycleError) as caught:
            topological_order(dict(reversed(list(edges.items()))))
        messages.add(str(caught.value))
        with pytest.raises(CycleError) as caught:
            topological_order(edges)
        messages.add(str(caught.value))
    assert messages == {"entity graph has a cycle: a → b → c → a"}


def test_ten_thousand_node_chain_and_fan_out() -> None:
    names = [f"e{i:05d}" for i in range(10_000)]
    chain = {name: ({names[i - 1]} if i else set()) for i, name in enumerate(names)}
    fan = {name: ({names[0]} if i else set()) for i, name in enumerate(names)}
    started = time.perf_counter()
    assert topological_order(dict(reversed(list(chain.items())))) == names
    assert topological_order(fan) == names
    # Generous bound: only catches an accidental quadratic algorithm, never a slow CI machine.
    assert time.perf_counter() - started < 5


def test_long_cycle_is_found_without_recursion() -> None:
    names = [f"n{i:05d}" for i in range(10_000)]
    edges = {name: {names[(i + 1) % len(names)]} for i, name in enumerate(names)}
    with pytest.raises(CycleError) as caught:
        topological_order(edges)
    assert caught.value.cycle == [*names, names[0]]
