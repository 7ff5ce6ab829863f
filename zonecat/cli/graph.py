"""``zonecat graph``: an install's entity graph as a tree, Graphviz dot or Mermaid."""

from __future__ import annotations

import click

from zonecat.cli import graphtext, render
from zonecat.cli.context import State, json_option, pass_state, seg, zone_option

__all__ = ["graph"]


@click.command()
@click.argument("install_id", metavar="INSTALL")
@zone_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", "dot", "mermaid"]),
    default="tree",
    show_default=True,
    help="tree for reading, dot for Graphviz, mermaid for Markdown.",
)
@json_option
@pass_state
def graph(state: State, install_id: str, zone: str, fmt: str, as_json: bool) -> None:
    """Show the entities of INSTALL and how they depend on each other."""
    zone_id = state.zone_id(zone)
    path = f"/zones/{seg(zone_id)}/installs/{seg(install_id)}"
    body = state.client.get(f"{path}/graph")
    if as_json:
        render.print_json(body)
    elif fmt == "dot":
        click.echo(graphtext.to_dot(body), nl=False)
    elif fmt == "mermaid":
        click.echo(graphtext.to_mermaid(body), nl=False)
    else:
        render.print_graph_tree(body, state.client.get(path))
