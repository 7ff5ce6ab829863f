"""Install graphs as text: dependency order, Graphviz ``dot`` and Mermaid ``flowchart``. Pure functions.

A graph is the body of ``GET /zones/{z}/installs/{id}/graph``: ``nodes`` (``local_name``, ``type``,
``identifier``, ``entity_id``, ``href``, ``action``) and ``edges`` (``from`` the dependent, ``to`` its
dependency, ``rel``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from zonecat.domain.graph import CycleError, topological_order

__all__ = ["dependencies", "dependency_order", "to_dot", "to_mermaid"]

Graph = Mapping[str, Any]


def _nodes(graph: Graph) -> list[Mapping[str, Any]]:
    return [n for n in graph.get("nodes") or [] if isinstance(n, Mapping)]


def _edges(graph: Graph) -> list[Mapping[str, Any]]:
    return [e for e in graph.get("edges") or [] if isinstance(e, Mapping)]


def dependencies(graph: Graph) -> dict[str, list[tuple[str, str]]]:
    """For each node, its ``(dependency, rel)`` pairs in edge order (each pair once)."""
    deps: dict[str, list[tuple[str, str]]] = {str(n.get("local_name")): [] for n in _nodes(graph)}
    for edge in _edges(graph):
        pair = (str(edge.get("to")), str(edge.get("rel") or "depends-on"))
        listed = deps.setdefault(str(edge.get("from")), [])
        if pair not in listed:
            listed.append(pair)
    return deps


def dependency_order(graph: Graph) -> list[str]:
    """Every local name, each after the names it depends on (the server's node order if there is a cycle)."""
    names = [str(n.get("local_name")) for n in _nodes(graph)]
    edges = {name: {dep for dep, _ in deps} for name, deps in dependencies(graph).items()}
    try:
        order = topological_order(edges)
    except CycleError:
        return names
    return order


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label_lines(node: Mapping[str, Any]) -> list[str]:
    lines = [str(node.get("local_name"))]
    kind = str(node.get("type") or "")
    action = str(node.get("action") or "")
    lines.append(f"{kind} ({action})" if action else kind)
    if node.get("identifier"):
        lines.append(str(node["identifier"]))
    return [line for line in lines if line]


def to_dot(graph: Graph) -> str:
    """A Graphviz digraph: one box per entity, one arrow from each dependent to its dependency."""
    name = str(graph.get("install_id") or "install")
    out = [f"digraph {_dot_quote(name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    by_name = {str(n.get("local_name")): n for n in _nodes(graph)}
    for local in dependency_order(graph):
        node = by_name.get(local, {"local_name": local})
        out.append(f"  {_dot_quote(local)} [label={_dot_quote(chr(10).join(_label_lines(node)))}];")
    for edge in _edges(graph):
        rel = str(edge.get("rel") or "depends-on")
        out.append(
            f"  {_dot_quote(str(edge.get('from')))} -> {_dot_quote(str(edge.get('to')))} [label={_dot_quote(rel)}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_ids(names: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = "n_" + (re.sub(r"[^A-Za-z0-9_]", "_", name) or "_")
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}_{n}", n + 1
        used.add(candidate)
        ids[name] = candidate
    return ids


def _mermaid_text(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(graph: Graph) -> str:
    """A Mermaid ``flowchart LR``: one node per entity, one labelled arrow per edge."""
    by_name = {str(n.get("local_name")): n for n in _nodes(graph)}
    order = dependency_order(graph)
    extra = [str(e.get(k)) for e in _edges(graph) for k in ("from", "to")]
    ids = _mermaid_ids(order + [name for name in dict.fromkeys(extra) if name not in order])
    out = ["flowchart LR"]
    for local in order:
        node = by_name.get(local, {"local_name": local})
        label = "<br/>".join(_mermaid_text(line) for line in _label_lines(node))
        out.append(f'  {ids[local]}["{label}"]')
    for edge in _edges(graph):
        rel = _mermaid_text(str(edge.get("rel") or "depends-on")).replace("|", "#124;")
        out.append(f"  {ids[str(edge.get('from'))]} -->|{rel}| {ids[str(edge.get('to'))]}")
    return "\n".join(out) + "\n"
