"""``zonecat token``: create and list API tokens (organization admins only)."""

from __future__ import annotations

from typing import Any

import click

from zonecat.cli import render
from zonecat.cli.context import State, json_option, limit_option, pass_state

__all__ = ["token"]


@click.group()
def token() -> None:
    """API tokens: organization-wide or limited to zones, read-write or read-only."""


@token.command("create")
@click.option("--name", "-n", default="cli", show_default=True, help="A name to recognise the token by.")
@click.option("--zone", "-z", "zones", multiple=True, help="Limit the token to this zone (id or name); repeatable.")
@click.option("--read-only", is_flag=True, help="The token may only read.")
@json_option
@pass_state
def create(state: State, name: str, zones: tuple[str, ...], read_only: bool, as_json: bool) -> None:
    """Create a token; its secret is printed once and can never be read again."""
    body: dict[str, Any] = {"name": name, "read_only": read_only}
    if zones:
        body["zones"] = [state.zone_id(z) for z in zones]
    created = state.client.post("/tokens", body)
    if as_json:
        render.print_json(created)
        return
    scope = ", ".join(created.get("zones") or []) or "every zone"
    access = "read-only" if created.get("read_only") else "read-write"
    # Only the secret goes to stdout, so `export ZONECAT_TOKEN=$(zonecat token create …)` works.
    click.echo(f"created token {created.get('name')} ({created['id']}): {access}, {scope}", err=True)
    click.echo("its secret is shown only this once; store it now:", err=True)
    click.echo(created["token"])


@token.command("list")
@limit_option
@json_option
@pass_state
def list_(state: State, limit: int | None, as_json: bool) -> None:
    """List the organization's tokens (never their secrets)."""
    body = state.client.list_all("/tokens", limit=limit)
    if as_json:
        render.print_json(body)
        return
    render.print_table(
        ["id", "name", "zones", "access", "created"],
        (
            [
                t["id"],
                t.get("name"),
                ", ".join(t.get("zones") or []) or "all",
                "read-only" if t.get("read_only") else "read-write",
                t.get("created_at"),
            ]
            for t in body["items"]
        ),
        empty="no tokens",
    )
