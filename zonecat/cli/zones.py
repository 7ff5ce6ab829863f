"""``zonecat zone``: create and list zones."""

from __future__ import annotations

import click

from zonecat.cli import render
from zonecat.cli.context import State, json_option, limit_option, pass_state

__all__ = ["zone"]


@click.group()
def zone() -> None:
    """Zones: isolated environments that hold entities and installs."""


@zone.command("create")
@click.argument("name")
@click.option("--description", "-d", default=None, help="What the zone is for.")
@json_option
@pass_state
def create(state: State, name: str, description: str | None, as_json: bool) -> None:
    """Create a zone called NAME."""
    body: dict[str, str] = {"name": name}
    if description is not None:
        body["description"] = description
    created = state.client.post("/zones", body)
    if as_json:
        render.print_json(created)
        return
    click.echo(f"created zone {created['name']} ({created['id']})")


@zone.command("list")
@limit_option
@json_option
@pass_state
def list_(state: State, limit: int | None, as_json: bool) -> None:
    """List the zones this token can see, newest first."""
    body = state.client.list_all("/zones", limit=limit)
    if as_json:
        render.print_json(body)
        return
    render.print_table(
        ["id", "name", "description", "created"],
        ([z["id"], z.get("name"), z.get("description"), z.get("created_at")] for z in body["items"]),
        empty="no zones",
    )
