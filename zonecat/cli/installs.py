"""``zonecat install`` (with ``list`` and ``show``) and ``zonecat uninstall``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from zonecat.cli import render
from zonecat.cli.client import ApiError
from zonecat.cli.context import (
    State,
    json_option,
    limit_option,
    pass_state,
    seg,
    timeout_option,
    zone_option,
)
from zonecat.cli.inputs import load_inputs_file, parse_inputs
from zonecat.cli.tasks import follow

__all__ = ["install", "uninstall"]


class InstallGroup(click.Group):
    """``zonecat install PACKAGE …`` installs; ``zonecat install list|show …`` are subcommands."""

    default_command = "create"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=InstallGroup)
def install() -> None:
    """Install a package into a zone (`zonecat install PACKAGE --zone Z`), or list and show installs."""


def _installs_path(zone_id: str) -> str:
    return f"/zones/{seg(zone_id)}/installs"


def _input_schema(state: State, zone_id: str, package_id: str) -> dict[str, Any] | None:
    """The package's effective input schema, to read typed ``--input`` values; None if it cannot be read."""
    try:
        pkg = state.client.get(f"/zones/{seg(zone_id)}/packages/{seg(package_id)}")
    except ApiError:
        return None
    schema = (pkg.get("input_state") or {}).get("effective_schema")
    return schema if isinstance(schema, dict) else None


@install.command("create")
@click.argument("package_id", metavar="PACKAGE")
@zone_option
@click.option("--input", "-i", "pairs", multiple=True, metavar="KEY=VALUE", help="One input; JSON values allowed.")
@click.option(
    "--inputs-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A YAML/JSON mapping of inputs (--input wins).",
)
@click.option(
    "--version", "version", type=click.IntRange(min=1), default=None, help="Package version (default: latest)."
)
@click.option("--wait", "-w", is_flag=True, help="Follow the task and print the outputs or the error.")
@timeout_option
@json_option
@pass_state
def create(
    state: State,
    package_id: str,
    zone: str,
    pairs: tuple[str, ...],
    inputs_file: Path | None,
    version: int | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Install PACKAGE (id or slug) into a zone."""
    zone_id = state.zone_id(zone)
    base = load_inputs_file(inputs_file) if inputs_file else {}
    schema = _input_schema(state, zone_id, package_id) if pairs else None
    body: dict[str, Any] = {"package_id": package_id}
    inputs = parse_inputs(pairs, base, schema)
    if inputs:
        body["inputs"] = inputs
    if version is not None:
        body["version"] = version
    created = state.client.post(_installs_path(zone_id), body)
    if wait:
        if not as_json:
            click.echo(f"install {created.get('install_id')}: task {created['id']}")
        follow(state, zone_id, created["id"], as_json=as_json, timeout=timeout)
        return
    if as_json:
        render.print_json(created)
        return
    click.echo(f"install {created.get('install_id')}: task {created['id']} is {created.get('status')}")
    click.echo(f"follow it with: zonecat task watch {created['id']} --zone {shlex.quote(zone)}")


@install.command("list")
@zone_option
@limit_option
@json_option
@pass_state
def list_(state: State, zone: str, limit: int | None, as_json: bool) -> None:
    """List the installs of a zone, newest first."""
    body = state.client.list_all(_installs_path(state.zone_id(zone)), limit=limit)
    if as_json:
        render.print_json(body)
        return
    render.print_table(
        ["id", "package", "version", "status", "created"],
        (
            [i["id"], i.get("package_slug"), i.get("package_version"), i.get("status"), i.get("created_at")]
            for i in body["items"]
        ),
        empty="no installs",
    )


@install.command("show")
@click.argument("install_id", metavar="INSTALL")
@zone_option
@json_option
@pass_state
def show(state: State, install_id: str, zone: str, as_json: bool) -> None:
    """Show one install with its inputs and outputs."""
    body = state.client.get(f"{_installs_path(state.zone_id(zone))}/{seg(install_id)}")
    if as_json:
        render.print_json(body)
        return
    render.print_pairs(
        [
            ("id", body.get("id")),
            ("package", body.get("package_slug")),
            ("version", body.get("package_version")),
            ("status", body.get("status")),
            ("created", body.get("created_at")),
            ("updated", body.get("updated_at")),
        ]
    )
    for title in ("inputs", "outputs"):
        if body.get(title):
            render.print_pairs(sorted(body[title].items()), title=title)


@click.command()
@click.argument("install_id", metavar="INSTALL")
@zone_option
@click.option("--wait", "-w", is_flag=True, help="Follow the delete task to its end.")
@timeout_option
@json_option
@pass_state
def uninstall(state: State, install_id: str, zone: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Delete an install: remove what it created; entities adopted or still shared are preserved."""
    zone_id = state.zone_id(zone)
    started = state.client.delete(f"{_installs_path(zone_id)}/{seg(install_id)}")
    if wait:
        # The finished delete task carries the same warnings; they are printed once, at the end.
        if not as_json:
            click.echo(f"uninstall {install_id}: task {started['id']}")
        follow(state, zone_id, started["id"], as_json=as_json, timeout=timeout)
        return
    if as_json:
        render.print_json(started)
        return
    render.print_warnings(started.get("warnings") or [])
    click.echo(f"uninstall {install_id}: task {started['id']} is {started.get('status')}")
    click.echo(f"follow it with: zonecat task watch {started['id']} --zone {shlex.quote(zone)}")
