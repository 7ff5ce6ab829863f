"""Terminal output: raw JSON for ``--json``, rich tables and trees otherwise.

rich is imported inside each function so that ``zonecat --help`` and ``--json`` commands start quickly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from zonecat.cli import graphtext

if TYPE_CHECKING:
    from rich.console import Console

PIPE_WIDTH = 200

__all__ = [
    "console",
    "print_graph_tree",
    "print_json",
    "print_pairs",
    "print_table",
    "print_warnings",
    "text_cell",
]


def console(stderr: bool = False) -> Console:
    """A console on the current stdout (or stderr), created per call so test runners can capture it."""
    import os

    from rich.console import Console

    # emoji=False: a name or description is shown as written (rich would turn :thumbs_up: into an emoji).
    out = Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured: a table as wide as its content beats ids folded over three lines.
        out.width = PIPE_WIDTH
    return out


def print_json(data: object) -> None:
    """The raw JSON body, indented, on stdout (never styled, so it pipes into ``jq``)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def text_cell(value: object) -> str:
    """A table cell: empty for None, JSON for lists and objects, the text otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    empty: str = "nothing to show",
) -> None:
    """A rich table; long cells fold instead of being cut, so ids stay copyable."""
    from rich.markup import escape
    from rich.table import Table

    rows = list(rows)
    out = console()
    if not rows:
        out.print(f"[dim]{escape(empty)}[/dim]")
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(text_cell(cell)) for cell in row))
    out.print(table)


def print_pairs(pairs: Iterable[tuple[str, object]], *, title: str | None = None) -> None:
    """A two-column key/value table; pairs whose value is None or empty are left out."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        if value is None or value == "" or value == [] or value == {}:
            continue
        table.add_row(escape(key), escape(text_cell(value)))
    console().print(table)


def print_warnings(warnings: Sequence[Mapping[str, Any]]) -> None:
    """Task warnings (entities a delete preserves), in a yellow panel so they are not missed."""
    if not warnings:
        return
    from rich.markup import escape
    from rich.panel import Panel

    lines = []
    for warning in warnings:
        lines.append(
            f"[bold]{escape(str(warning.get('code', 'warning')))}[/bold]: {escape(str(warning.get('message', '')))}"
        )
        for detail in warning.get("details") or []:
            lines.append(f"  {escape(str(detail.get('field') or '-'))}: {escape(str(detail.get('message', '')))}")
    title = f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    console().print(Panel("\n".join(lines), title=title, title_align="left", border_style="yellow"))


def print_graph_tree(graph: Mapping[str, Any], install: Mapping[str, Any] | None = None) -> None:
    """A tree rooted at the install: its entities in dependency order, each with its action and links."""
    from rich.markup import escape
    from rich.tree import Tree

    install_id = str(graph.get("install_id") or "")
    label = f"[bold]{escape(install_id)}[/bold] ({escape(str(graph.get('status') or ''))})"
    if install:
        label += f" {escape(str(install.get('package_slug') or ''))}"
        if install.get("package_version") is not None:
            label += f" v{install['package_version']}"
    tree = Tree(label)
    by_name = {str(n.get("local_name")): n for n in graph.get("nodes") or []}
    deps = graphtext.dependencies(graph)
    for local in graphtext.dependency_order(graph):
        node = by_name.get(local, {})
        text = f"[bold]{escape(local)}[/bold] [cyan]{escape(str(node.get('type') or ''))}[/cyan]"
        if node.get("action"):
            text += f" [green]{escape(str(node['action']))}[/green]"
        if node.get("entity_id"):
            text += f" {escape(str(node['entity_id']))}"
        if node.get("identifier"):
            text += f" [dim]{escape(str(node['identifier']))}[/dim]"
        branch = tree.add(text)
        for dep, rel in deps.get(local, []):
            branch.add(f"[dim]{escape(rel)} →[/dim] {escape(dep)}")
    console().print(tree)
