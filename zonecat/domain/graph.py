"""Topological order of a dependency graph, and a readable cycle when there is none.

The entity graph of a package is small to moderate (at most 10,000 entities, design §7), but release checks and
every create task walk it, so the order is computed by Kahn's algorithm in O((V + E) log V): a heap picks the
next ready node by name, which makes the order deterministic — the same manifest provisions its entities in the
same order on every worker and every resume.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

__all__ = ["CycleError", "topological_order"]


class CycleError(ValueError):
    """The graph has a cycle; ``cycle`` lists it with its first name repeated at the end (``[a, b, a]``)."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(f"entity graph has a cycle: {' → '.join(self.cycle)}")


def topological_order(edges: Mapping[str, AbstractSet[str]]) -> list[str]:
    """Every node, each after all the nodes it depends on; ``edges[a]`` is the set of names ``a`` depends on.

    A name that only appears as a dependency is a node too (with no dependencies of its own). Among nodes that
    are ready at the same time the smallest name comes first. Raises ``CycleError`` naming one cycle.
    """
    dependents: dict[str, list[str]] = {}
    waiting: dict[str, int] = {}
    for node, deps in edges.items():
        waiting.setdefault(node, 0)
        for dep in deps:
            waiting.setdefault(dep, 0)
    for node, deps in edges.items():
        # A set cannot hold a dependency twice, so the count of unmet dependencies is simply its size.
        waiting[node] = len(deps)
        for dep in deps:
            dependents.setdefault(dep, []).append(node)

    ready = [node for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for dependent in dependents.get(node, ()):
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)

    if len(order) < len(waiting):
        remaining = {node for node, count in waiting.items() if count > 0}
        raise CycleError(_find_cycle(edges, remaining))
    return order


def _find_cycle(edges: Mapping[str, AbstractSet[str]], remaining: set[str]) -> list[str]:
    """One cycle among ``remaining`` (nodes Kahn could not order), rotated to start at its smallest name.

    Every remaining node still depends on some remaining node (otherwise Kahn would have emitted it), so
    walking dependencies from any remaining node must revisit a node; the revisited stretch is a cycle.
    """
    node = min(remaining)
    position: dict[str, int] = {}
    path: list[str] = []
    while node not in position:
        position[node] = len(path)
        path.append(node)
        # The smallest unmet dependency keeps the reported cycle deterministic.
        node = min(dep for dep in edges.get(node, ()) if dep in remaining)
    cycle = path[position[node] :]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    return [*cycle, cycle[0]]
