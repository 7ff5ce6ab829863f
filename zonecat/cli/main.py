"""The ``zonecat`` command: a client of the HTTP API (never of the database), plus the server commands."""

from __future__ import annotations

import click

from zonecat import __version__
from zonecat.cli import entities, graph, installs, packages, tasks, tokens, zones
from zonecat.cli.context import DEFAULT_URL, State
from zonecat.cli.server_commands import SERVER_COMMANDS

__all__ = ["main"]


@click.group(name="zonecat", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--url",
    envvar="ZONECAT_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Server base URL (env ZONECAT_URL).",
)
@click.option("--token", envvar="ZONECAT_TOKEN", default=None, help="Bearer token (env ZONECAT_TOKEN).")
@click.version_option(__version__, prog_name="zonecat")
@click.pass_context
def main(ctx: click.Context, url: str, token: str | None) -> None:
    """zonecat: install versioned packages of entities into zones, as durable catalog tasks."""
    ctx.obj = State(url=url, token=token)


for command in (
    zones.zone,
    packages.package,
    installs.install,
    installs.uninstall,
    tasks.task,
    graph.graph,
    entities.entity,
    tokens.token,
    *SERVER_COMMANDS,
):
    main.add_command(command)
