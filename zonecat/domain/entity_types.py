"""The built-in entity types (design §5), loaded from the data file ``zonecat/data/entity_types.yaml``.

An entity type is data — an attribute schema, a natural key, a collection path, write-only attributes — so adding
one is adding an entry to the data file, not code. The file ships inside the package and is read once, at first
import, through ``importlib.resources`` (so a wheel install finds it too).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

__all__ = ["ENTITY_TYPES", "EntityType", "by_collection", "read_attributes"]


@dataclass(frozen=True)
class EntityType:
    """One kind of entity.

    ``collection`` is the API path segment (``providers``, ``application-credentials``); ``schema`` the attribute
    schema (design §5 subset); ``required`` and ``write_only`` the attribute names the schema marks required and
    ``writeOnly``; ``key`` the attributes that, with zone and type, identify an entity (its natural key).
    """

    name: str
    collection: str
    # Excluded from the hash: a dict is unhashable, and name + collection already identify a type.
    schema: dict[str, Any] = field(hash=False)
    required: tuple[str, ...]
    write_only: frozenset[str]
    key: tuple[str, ...]


def _entity_type(name: str, entry: Mapping[str, Any]) -> EntityType:
    schema: dict[str, Any] = entry["schema"]
    properties: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
    key = tuple(entry["key"])
    # A broken data file must fail at start-up, not on the first install that touches the type.
    missing = [attribute for attribute in key if attribute not in properties]
    if missing:
        raise ValueError(f"entity type {name!r}: key attributes {missing} are not in its schema")
    return EntityType(
        name=name,
        collection=entry["collection"],
        schema=schema,
        required=tuple(schema.get("required", ())),
        write_only=frozenset(attr for attr, spec in properties.items() if spec.get("writeOnly") is True),
        key=key,
    )


def _load() -> Mapping[str, EntityType]:
    text = resources.files("zonecat").joinpath("data", "entity_types.yaml").read_text(encoding="utf-8")
    raw: Mapping[str, Mapping[str, Any]] = yaml.safe_load(text)
    return MappingProxyType({name: _entity_type(name, entry) for name, entry in raw.items()})


ENTITY_TYPES: Mapping[str, EntityType] = _load()
"""Every built-in entity type by name (``provider``, ``resource``, ``application``, …); read-only."""

_BY_COLLECTION: Mapping[str, EntityType] = MappingProxyType({t.collection: t for t in ENTITY_TYPES.values()})


def by_collection(collection: str) -> EntityType | None:
    """The entity type whose API path segment is ``collection`` (``providers`` → ``provider``), or None."""
    return _BY_COLLECTION.get(collection)


def read_attributes(
    entity_type: EntityType, attributes: Mapping[str, Any], write_only_set: Collection[str] | None = None
) -> dict[str, Any]:
    """The read representation of stored attributes: write-only values dropped, and ``<field>_set: true`` for each
    write-only attribute that holds a value: those of ``attributes`` that are not null, or, when the values are
    kept elsewhere (sealed), those named by ``write_only_set``.

    Keycard shows a stored ``client_secret`` as ``client_secret_set: true``; a write-only attribute that is absent
    (or null) adds nothing, because there is nothing set to report.
    """
    shown = {name: value for name, value in attributes.items() if name not in entity_type.write_only}
    if write_only_set is None:
        write_only_set = {name for name, value in attributes.items() if value is not None}
    for name in sorted(entity_type.write_only):
        if name in write_only_set:
            shown[f"{name}_set"] = True
    return shown
