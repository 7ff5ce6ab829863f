"""Install inputs from the command line: ``--input key=value`` pairs over an optional ``--inputs-file``.

A value is read as JSON when it parses as JSON (``scopes='["a"]'``, ``port=8080``, ``debug=true``) and kept as a
plain string otherwise. When the package's input schema says a property is a string, the value is always that
string (so ``client_id=12345`` stays ``"12345"``); a JSON-quoted string (``name='"x"'``) is unquoted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from zonecat.cli.json_yaml import JsonYamlError, load_json_yaml

__all__ = ["load_inputs_file", "parse_input_value", "parse_inputs"]


def parse_input_value(raw: str, expected_type: object = None) -> object:
    """One ``--input`` value: JSON when it parses (and the schema does not ask for a string), else the text."""
    if expected_type == "string" or (isinstance(expected_type, list) and expected_type == ["string"]):
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            try:
                decoded = json.loads(raw)
            except ValueError:
                return raw
            return decoded if isinstance(decoded, str) else raw
        return raw
    try:
        decoded = json.loads(raw, parse_constant=_not_json)
    except ValueError:
        return raw
    if isinstance(decoded, float) and not math.isfinite(decoded):
        return raw  # ``1e999``: JSON has no infinity, so the text it is
    return decoded


def _not_json(constant: str) -> object:
    """``NaN``, ``Infinity``: Python's json reads them, JSON has none; the value is then the text it is."""
    raise ValueError(f"{constant} is not JSON")


def parse_inputs(
    pairs: Iterable[str],
    base: Mapping[str, Any] | None = None,
    schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``base`` (from ``--inputs-file``) overlaid with each ``key=value`` pair; a later pair wins."""
    properties = (schema or {}).get("properties") or {}
    inputs = dict(base or {})
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--input")
        prop = properties.get(key) if isinstance(properties, Mapping) else None
        expected = prop.get("type") if isinstance(prop, Mapping) else None
        inputs[key] = parse_input_value(raw, expected)
    return inputs


def load_inputs_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file holding one mapping of inputs (as JSON values: see ``json_yaml``)."""
    try:
        data = load_json_yaml(path)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--inputs-file") from exc
    except JsonYamlError as exc:
        raise click.BadParameter(str(exc), param_hint="--inputs-file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping of inputs", param_hint="--inputs-file")
    return data
