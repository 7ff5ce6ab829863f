"""Local package manifests: read a YAML/JSON file and summarise its entity graph without a server.

The summary's dependencies are a best-effort static reading (``entities.<name>`` outside string literals, and
``#name`` link hrefs); the server's release checks remain the authority.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from zonecat.cli.json_yaml import JsonYamlError, load_json_yaml

__all__ = ["entity_dependencies", "load_manifest_file", "slugify", "summarize"]

MAX_SLUG_LENGTH = 63
_STRING_LITERAL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_ENTITY_REF = re.compile(r"\bentities\.([A-Za-z_][A-Za-z0-9_]*)")


def slugify(name: str) -> str:
    """The server's slug of a package name (``Google Calendar API`` → ``google-calendar-api``).

    The same rule as ``zonecat.domain.manifest.slugify``, restated so the CLI need not import the domain's CEL
    and JSON Schema machinery (seconds of start-up): accents folded to ASCII, every other run of
    non-alphanumerics one ``-``, at most 63 characters, never empty.
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", folded).strip("-")
    return slug[:MAX_SLUG_LENGTH].rstrip("-") or "package"


def load_manifest_file(path: str | Path) -> dict[str, Any]:
    """The manifest in ``path`` (YAML or JSON, as JSON values: see ``json_yaml``), which must be a mapping."""
    try:
        data = load_json_yaml(path)
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from exc
    except JsonYamlError as exc:
        raise click.ClickException(str(exc)) from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{path} must hold one package manifest (a mapping)")
    return data


def entity_dependencies(spec: Mapping[str, Any]) -> list[str]:
    """The entities that one entity spec refers to, sorted."""
    found: set[str] = set()
    bindings = spec.get("bindings")
    if isinstance(bindings, str):
        found |= set(_ENTITY_REF.findall(_STRING_LITERAL.sub('""', bindings)))
    for link in spec.get("links") or []:
        href = link.get("href") if isinstance(link, Mapping) else None
        if isinstance(href, str) and href.startswith("#"):
            found.add(href[1:])
    found.discard("inputs")
    return sorted(found)


def summarize(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Name, slug, kind, inputs, outputs and the entities with their types and dependencies."""
    entities = _mapping(manifest.get("entities"))
    rows = []
    for local, spec in entities.items():
        spec = spec if isinstance(spec, Mapping) else {}
        rows.append(
            {
                "local_name": str(local),
                "type": spec.get("type"),
                "depends_on": entity_dependencies(spec),
            }
        )
    inputs_schema = _section(manifest, "inputs").get("schema")
    outputs_schema = _section(manifest, "outputs").get("schema")
    name = str(manifest.get("name") or "")
    return {
        "name": name,
        "slug": slugify(name),
        "kind": manifest.get("kind"),
        "description": manifest.get("description"),
        "inputs": sorted(_properties(inputs_schema)),
        "required_inputs": list(_mapping(inputs_schema).get("required") or []),
        "outputs": sorted(_properties(outputs_schema)),
        "entities": rows,
    }


def _section(manifest: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    return _mapping(manifest.get(key))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _properties(schema: object) -> list[str]:
    return [str(k) for k in _mapping(_mapping(schema).get("properties"))]
