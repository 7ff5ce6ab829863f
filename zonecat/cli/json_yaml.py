"""YAML (or JSON) files read as the JSON the API takes: manifests (`package push`, `package show FILE`) and
`--inputs-file`.

YAML holds more than JSON can: dates (``created: 2024-01-01`` becomes a ``date``), ``!!binary``, ``!!set``,
``.nan`` and ``.inf``, mappings as keys, and aliases that a 400-byte file can expand into gigabytes of JSON (the
"billion laughs"). The loader here keeps what only looks like a date or a time as the text it is (as JSON would),
refuses a key given twice in one mapping, and ``as_json`` then refuses whatever JSON cannot hold, naming where it
is, within a budget of values that stops an expansion long before it costs memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["JsonYamlError", "load_json_yaml"]

#: Values a file may expand to (counting every use of an alias again): far above any manifest (a 10,000-entity
#: package is ~100,000), far below what would exhaust memory.
MAX_VALUES = 2_000_000


class JsonYamlError(ValueError):
    """The file is not YAML or JSON that the API can take; the message says where and why."""


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` without implicit timestamps, refusing a key given twice in one mapping."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *anchor``: its keys may be given again here
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found key {key!r} twice", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def load_json_yaml(path: str | Path) -> Any:
    """The YAML or JSON document in ``path``, as JSON values; ``JsonYamlError`` (or ``OSError``) when it cannot
    be."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonYamlError(f"{path} is not UTF-8 text (byte {exc.start} is not)") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise JsonYamlError(f"{path} is not valid YAML or JSON: {exc}") from exc
    except RecursionError as exc:
        raise JsonYamlError(f"{path} nests too deeply") from exc
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise JsonYamlError(f"{path} holds a value that cannot be read: {exc}") from exc
    as_json(data, str(path))
    return data


def as_json(data: Any, where: str) -> None:
    """Refuse what JSON cannot hold (naming its place), or an expansion past ``MAX_VALUES`` values."""
    budget = MAX_VALUES
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, place = stack.pop()
        budget -= 1
        if budget < 0:
            raise JsonYamlError(f"{where} expands to more than {MAX_VALUES:,} values (YAML aliases used many times?)")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise JsonYamlError(f"{where}: {_at(place)} has a key that is not text ({type(key).__name__})")
                stack.append((item, f"{place}.{key}" if place else str(key)))
        elif isinstance(value, list):
            stack.extend((item, f"{place}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise JsonYamlError(f"{where}: {_at(place)} is {value}, which JSON cannot hold")
        elif not isinstance(value, str | int | float | bool) and value is not None:
            raise JsonYamlError(f"{where}: {_at(place)} is a {type(value).__name__}, which JSON cannot hold")


def _at(place: str) -> str:
    return place or "the document"
