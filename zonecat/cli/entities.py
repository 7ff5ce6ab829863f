"""``zonecat entity``: the entities of a zone with their provenance."""

from __future__ import annotations

import click

from zonecat.cli import render
from zonecat.cli.context import State, json_option, limit_option, pass_state, seg, zone_option

__all__ = ["entity"]


@click.group()
def entity() -> None:
    """Entities: providers, resources, applications, credentials and secrets of a zone."""


@entity.command("list")
@zone_option
@click.option("--type", "entity_type", default=None, help="Only this entity type (provider, resource, …).")
@click.option("--install", "install_id", default=None, help="Only entities this install uses.")
@limit_option
@json_option
@pass_state
def list_(
    state: State, zone: str, entity_type: str | None, install_id: str | None, limit: int | None, as_json: bool
) -> None:
    """List a zone's entities, newest first, with who created and who uses each."""
    params = {k: v for k, v in {"type": entity_type, "install_id": install_id}.items() if v}
    body = state.client.list_all(f"/zones/{seg(state.zone_id(zone))}/entities", params, limit=limit)
    if as_json:
        render.print_json(body)
        return
    render.print_table(
        ["id", "type", "identifier", "managed", "created by", "used by"],
        (
            [
                e["id"],
                e.get("type"),
                e.get("identifier"),
                e.get("managed"),
                e.get("created_by_install_id"),
                _installs(e.get("used_by")),
            ]
            for e in body["items"]
        ),
        empty="no entities",
    )


def _installs(uses: object) -> str:
    """``used_by`` as text: install ids, or ``{install_id, …}`` objects."""
    if not isinstance(uses, list):
        return render.text_cell(uses)
    return ", ".join(str(u.get("install_id", u)) if isinstance(u, dict) else str(u) for u in uses)
