"""Package kinds (design §4.3), loaded from the data files ``zonecat/data/kinds/*.yaml``.

A kind is a named base input schema; a package's effective input schema is its kind's schema merged with its own.
Kinds are data, one file per kind, read once at first import through ``importlib.resources``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

__all__ = ["KINDS", "Kind"]


@dataclass(frozen=True)
class Kind:
    """A package kind: its ``name`` (``api-server``) and base input ``schema`` (design §5 subset)."""

    name: str
    # Excluded from the hash: a dict is unhashable, and the name identifies a kind.
    schema: dict[str, Any] = field(hash=False)


def _load() -> Mapping[str, Kind]:
    kinds: dict[str, Kind] = {}
    directory = resources.files("zonecat").joinpath("data", "kinds")
    for entry in sorted(directory.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".yaml"):
            continue
        raw: Mapping[str, Any] = yaml.safe_load(entry.read_text(encoding="utf-8"))
        name = raw["name"]
        # The file name is how people find a kind; a mismatch would be a silent surprise, so refuse it.
        if entry.name != f"{name}.yaml":
            raise ValueError(f"kind file {entry.name} declares name {name!r}")
        kinds[name] = Kind(name=name, schema=raw["schema"])
    return MappingProxyType(kinds)


KINDS: Mapping[str, Kind] = _load()
"""Every known kind by name (``api-server``, ``mcp-server``, ``application``, ``custom``); read-only."""
