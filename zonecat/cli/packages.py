"""``zonecat package``: author zone packages from manifest files, release them, browse the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zonecat.cli import render
from zonecat.cli.client import ApiError
from zonecat.cli.context import State, json_option, limit_option, pass_state, seg, zone_option
from zonecat.cli.manifest_file import load_manifest_file, slugify, summarize

__all__ = ["package"]


@click.group()
def package() -> None:
    """Packages: versioned recipes of entities (global catalog or authored in a zone)."""


def _packages_path(zone_id: str) -> str:
    return f"/zones/{seg(zone_id)}/packages"


@package.command("push")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@zone_option
@click.option("--release", "do_release", is_flag=True, help="Also release the pushed draft as a new version.")
@json_option
@pass_state
def push(state: State, file: Path, zone: str, do_release: bool, as_json: bool) -> None:
    """Create a zone package from FILE, or replace its draft if the zone already has it."""
    manifest = load_manifest_file(file)
    path = _packages_path(state.zone_id(zone))
    result: dict[str, Any] = {}
    try:
        pkg = state.client.post(path, {"manifest": manifest})
        draft = pkg.get("draft") or {}
        click.echo(f"created package {pkg['slug']} ({pkg['id']})", err=as_json)
    except ApiError as exc:
        if exc.status != 409:
            raise
        pkg = _existing(state, path, slugify(str(manifest.get("name") or "")), exc)
        draft = state.client.put(f"{path}/{seg(pkg['id'])}/draft", {"manifest": manifest})
        click.echo(f"updated the draft of {pkg['slug']} ({pkg['id']})", err=as_json)
    result.update(package=pkg, draft=draft)
    if do_release:
        body = {"manifest_sha": draft["manifest_sha"]} if draft.get("manifest_sha") else {}
        version = state.client.post(f"{path}/{seg(pkg['id'])}/versions", body)
        result["version"] = version
        click.echo(f"released {pkg['slug']} version {version['version']}", err=as_json)
    if as_json:
        render.print_json(result)
    elif draft.get("manifest_sha"):
        click.echo(f"draft manifest_sha {draft['manifest_sha']}")


def _existing(state: State, path: str, slug: str, conflict: ApiError) -> dict[str, Any]:
    """The package a 409 on create was about, if it is a zone package that can take a new draft."""
    items = state.client.get(path, params={"filters[slug]": slug, "limit": 1}).get("items") or []
    if not items:
        raise conflict
    pkg: dict[str, Any] = items[0]
    if (pkg.get("source") or {}).get("scope") == "global":
        raise click.ClickException(
            f"conflict: {slug!r} is a global catalog package, which cannot be changed through the API; "
            "rename your package"
        )
    return pkg


@package.command("release")
@click.argument("package_id", metavar="ID_OR_SLUG")
@zone_option
@click.option("--manifest-sha", default=None, help="Release only if the draft still has this manifest_sha.")
@json_option
@pass_state
def release(state: State, package_id: str, zone: str, manifest_sha: str | None, as_json: bool) -> None:
    """Release the draft of a zone package as its next version."""
    body = {"manifest_sha": manifest_sha} if manifest_sha else {}
    version = state.client.post(f"{_packages_path(state.zone_id(zone))}/{seg(package_id)}/versions", body)
    if as_json:
        render.print_json(version)
        return
    click.echo(f"released {package_id} version {version['version']} ({version['id']}, sha {version['manifest_sha']})")


@package.command("list")
@zone_option
@click.option("--kind", default=None, help="Only these kinds (comma-separated).")
@click.option("--slug", default=None, help="Only the package with this slug.")
@limit_option
@json_option
@pass_state
def list_(state: State, zone: str, kind: str | None, slug: str | None, limit: int | None, as_json: bool) -> None:
    """List the packages visible in a zone (global and the zone's own), newest first."""
    params: dict[str, str] = {}
    if kind:
        params["kind"] = kind
    if slug:
        params["filters[slug]"] = slug
    body = state.client.list_all(_packages_path(state.zone_id(zone)), params, limit=limit)
    if as_json:
        render.print_json(body)
        return
    render.print_table(
        ["slug", "name", "kind", "version", "scope", "id"],
        (
            [
                p.get("slug"),
                p.get("name"),
                p.get("kind"),
                (p.get("current_version") or {}).get("version"),
                (p.get("source") or {}).get("scope"),
                p.get("id"),
            ]
            for p in body["items"]
        ),
        empty="no packages",
    )


@package.command("show")
@click.argument("target", metavar="FILE_OR_ID")
@click.option("--zone", "-z", envvar="ZONECAT_ZONE", default=None, help="Zone id or name (for a server package).")
@json_option
@pass_state
def show(state: State, target: str, zone: str | None, as_json: bool) -> None:
    """Summarise a local manifest file, or show a package (id or slug) of a zone."""
    if Path(target).is_file():
        summary = summarize(load_manifest_file(target))
        if as_json:
            render.print_json(summary)
            return
        _print_summary(summary)
        return
    if zone is None:
        raise click.UsageError(f"{target!r} is not a file; give --zone to show a server package")
    pkg = state.client.get(f"{_packages_path(state.zone_id(zone))}/{seg(target)}")
    if as_json:
        render.print_json(pkg)
        return
    _print_package(pkg)


def _print_summary(summary: dict[str, Any]) -> None:
    required = set(summary["required_inputs"])
    render.print_pairs(
        [
            ("name", summary["name"]),
            ("slug", summary["slug"]),
            ("kind", summary["kind"]),
            ("description", summary["description"]),
            ("inputs", ", ".join(f"{i}*" if i in required else i for i in summary["inputs"])),
            ("outputs", ", ".join(summary["outputs"])),
        ]
    )
    render.print_table(
        ["entity", "type", "depends on"],
        ([e["local_name"], e["type"], ", ".join(e["depends_on"])] for e in summary["entities"]),
        title="entities",
        empty="no entities",
    )


def _print_package(pkg: dict[str, Any]) -> None:
    current = pkg.get("current_version") or {}
    draft = pkg.get("draft") or {}
    state = pkg.get("input_state") or {}
    schema = state.get("effective_schema") or {}
    required = set(schema.get("required") or [])
    inputs = [f"{k}*" if k in required else k for k in schema.get("properties") or {}]
    outputs = list(((pkg.get("outputs") or {}).get("schema") or {}).get("properties") or {})
    render.print_pairs(
        [
            ("id", pkg.get("id")),
            ("slug", pkg.get("slug")),
            ("name", pkg.get("name")),
            ("kind", pkg.get("kind")),
            ("scope", (pkg.get("source") or {}).get("scope")),
            ("description", pkg.get("description")),
            ("version", current.get("version")),
            ("version sha", current.get("manifest_sha")),
            ("draft sha", draft.get("manifest_sha")),
            ("tags", ", ".join(pkg.get("tags") or [])),
            ("inputs", ", ".join(inputs)),
            ("outputs", ", ".join(outputs)),
        ]
    )
    bindings = state.get("effective_bindings") or {}
    if bindings:
        render.print_table(
            ["input", "bound to"],
            ([key, value] for key, value in bindings.items()),
            title="effective input bindings",
        )
