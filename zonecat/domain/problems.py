"""Problems found while checking user-supplied documents (manifests, schemas, inputs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem: ``field`` is a dotted JSON path (``manifest.entities.api.bindings``, ``inputs.tags[2]``)."""

    field: str
    message: str


def join_path(base: str, *parts: str | int) -> str:
    """Extend a dotted JSON path: ``join_path("inputs", "tags", 2)`` is ``inputs.tags[2]``."""
    path = base
    for part in parts:
        if isinstance(part, int):
            path = f"{path}[{part}]"
        elif path:
            path = f"{path}.{part}"
        else:
            path = part
    return path
