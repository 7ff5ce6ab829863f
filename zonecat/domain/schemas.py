"""The JSON Schema keyword subset of design §5: checking schemas, validating instances, merging schemas.

Package authors write schemas in a small subset of JSON Schema 2020-12 (Keycard's ``Schema`` model). The subset is
enforced by ``METASCHEMA``, a 2020-12 metaschema that the API documentation can publish as is; this module only
turns its errors into ``Problem`` entries with readable messages and paths into the manifest.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from zonecat.domain.problems import Problem, join_path

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

ALLOWED_KEYWORDS: tuple[str, ...] = (
    "type",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "title",
    "description",
    "default",
    "readOnly",
    "writeOnly",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "format",
)

# Keywords Keycard documents as rejected ("reject at release time rather than silently ignore"). Any other
# keyword outside ALLOWED_KEYWORDS is rejected too; these only get a more specific message.
REJECTED_KEYWORDS: tuple[str, ...] = (
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "$ref",
    "$dynamicRef",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "$vocabulary",
)

TYPE_NAMES: tuple[str, ...] = ("object", "array", "string", "integer", "number", "boolean", "null")

_NON_NEGATIVE_INTEGER: dict[str, Any] = {"type": "integer", "minimum": 0}
_SCHEMA_REF: dict[str, Any] = {"$ref": "#/$defs/schema"}

METASCHEMA: dict[str, Any] = {
    "$schema": DRAFT_2020_12,
    "$id": "urn:zonecat:schema-subset",
    "title": "zonecat schema subset",
    "description": "The JSON Schema 2020-12 keywords a zonecat package schema may use.",
    "$ref": "#/$defs/schema",
    "$defs": {
        "typeName": {"enum": list(TYPE_NAMES)},
        "schema": {
            "type": "object",
            # The enforcement of the subset: every keyword outside the list fails here, one error per keyword.
            "propertyNames": {"enum": ["$schema", *ALLOWED_KEYWORDS]},
            "properties": {
                # Authors do not need `$schema`; if they write it, it must name the dialect we implement.
                "$schema": {"const": DRAFT_2020_12},
                # `if/then/else` instead of `anyOf`, so that errors inside a branch keep their own path and message.
                "type": {
                    "type": ["string", "array"],
                    "if": {"type": "string"},
                    "then": {"$ref": "#/$defs/typeName"},
                    "else": {"items": {"$ref": "#/$defs/typeName"}, "minItems": 1, "uniqueItems": True},
                },
                "properties": {"type": "object", "additionalProperties": _SCHEMA_REF},
                "required": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "items": _SCHEMA_REF,
                "additionalProperties": {
                    "type": ["boolean", "object"],
                    "if": {"type": "object"},
                    "then": _SCHEMA_REF,
                },
                "title": {"type": "string"},
                "description": {"type": "string"},
                "default": True,
                "readOnly": {"type": "boolean"},
                "writeOnly": {"type": "boolean"},
                "pattern": {"type": "string", "format": "regex"},
                "minLength": _NON_NEGATIVE_INTEGER,
                "maxLength": _NON_NEGATIVE_INTEGER,
                "minimum": {"type": "number"},
                "maximum": {"type": "number"},
                "minItems": _NON_NEGATIVE_INTEGER,
                "maxItems": _NON_NEGATIVE_INTEGER,
                "enum": {"type": "array", "minItems": 1},
                "const": True,
                "format": {"type": "string"},
            },
        },
    },
}

_FORMAT_CHECKER = FormatChecker()
_META_VALIDATOR = Draft202012Validator(METASCHEMA, format_checker=_FORMAT_CHECKER)
_ALLOWED_TEXT = ", ".join(ALLOWED_KEYWORDS)


def check_schema(schema: object, at: str) -> list[Problem]:
    """Check that ``schema`` uses only the keyword subset, with well-typed values; ``[]`` when it does.

    Each unknown or rejected keyword is one problem whose field is ``at`` plus the path of the keyword
    (``manifest.inputs.schema.properties.mode.oneOf``). Problems are sorted by field.
    """
    if not isinstance(schema, dict):
        return [Problem(at, "must be a JSON Schema object")]
    problems = {_meta_problem(error, at) for error in _META_VALIDATOR.iter_errors(schema)}
    if not problems:
        # A default that violates its own schema would make every install that omits the value fail.
        problems.update(_default_problems(schema, at))
    return sorted(problems, key=lambda p: (p.field, p.message))


def _default_problems(schema: Mapping[str, Any], at: str) -> Iterable[Problem]:
    """Check each ``default`` against the schema it sits in (``schema`` already passed the metaschema)."""
    if "default" in schema:
        validator = Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)
        for error in validator.iter_errors(schema["default"]):
            yield from _instance_problems(error, join_path(at, "default"))
    for name, subschema in (schema.get("properties") or {}).items():
        yield from _default_problems(subschema, join_path(at, "properties", name))
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), dict):
            yield from _default_problems(schema[keyword], join_path(at, keyword))


def _meta_problem(error: ValidationError, at: str) -> Problem:
    """Turn one metaschema error into a problem with the path of the offending keyword."""
    path = join_path(at, *error.absolute_path)
    schema_path = list(error.absolute_schema_path)
    if schema_path[-2:] == ["propertyNames", "enum"]:
        # propertyNames errors point at the object; the keyword itself is the failing instance.
        keyword = str(error.instance)
        field = join_path(path, keyword)
        if keyword in REJECTED_KEYWORDS:
            return Problem(field, f"keyword {keyword!r} is not supported (allowed: {_ALLOWED_TEXT})")
        return Problem(field, f"unknown keyword {keyword!r} is not supported (allowed: {_ALLOWED_TEXT})")
    if error.validator == "format" and error.validator_value == "regex":
        return Problem(path, "must be a valid regular expression")
    if error.validator == "enum" and schema_path[-2:] == ["typeName", "enum"]:
        return Problem(path, f"must be one of: {', '.join(TYPE_NAMES)}")
    if error.validator == "const" and path.endswith("$schema"):
        return Problem(path, f"must be {DRAFT_2020_12!r} when present")
    if error.validator == "uniqueItems":
        return Problem(path, "must not contain duplicates")
    return Problem(path, _message(error))


@functools.lru_cache(maxsize=512)
def _validator(canonical: str) -> Any:
    """One compiled validator per distinct schema: building one per request would dominate the hot path."""
    schema = json.loads(canonical)
    problems = check_schema(schema, "schema")
    if problems:
        # Only checked (released) schemas reach validation; an unchecked one is a programming error.
        raise ValueError("not a valid zonecat schema: " + "; ".join(f"{p.field}: {p.message}" for p in problems))
    return Draft202012Validator(schema, format_checker=_FORMAT_CHECKER)


_BY_IDENTITY: dict[int, tuple[Mapping[str, Any], Any]] = {}
_BY_IDENTITY_MAX = 1024


def _validator_for(schema: Mapping[str, Any]) -> Any:
    """``_validator`` keyed first by the schema object itself: entity-type schemas and the schemas of a cached
    manifest are the same objects on every step, and canonicalising them (``json.dumps`` with sorted keys) cost more
    than validating. The entry keeps the schema alive, so its id cannot be reused while it is cached; schemas are
    never mutated after parsing."""
    entry = _BY_IDENTITY.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]
    validator = _validator(_canonical(schema))
    if len(_BY_IDENTITY) >= _BY_IDENTITY_MAX:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[id(schema)] = (schema, validator)
    return validator


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def validate_instance(schema: Mapping[str, Any], instance: object, at: str) -> tuple[object, list[Problem]]:
    """Apply ``default``s to a copy of ``instance``, then validate it against ``schema``.

    Returns the instance with defaults and one problem per violation, sorted by field. A problem's field is ``at``
    plus the JSON path of the offending value (``inputs.tags[2]``); a missing required property or an extra
    property that ``additionalProperties`` forbids is reported at ``at.<name>``. Messages never quote the value,
    so a write-only secret cannot leak through an error. Raises ``ValueError`` if ``schema`` itself is invalid.
    """
    validator = _validator_for(schema)
    value = _apply_defaults(schema, _json_copy(instance))
    problems: set[Problem] = set()
    for error in validator.iter_errors(value):
        problems.update(_instance_problems(error, at))
    return value, sorted(problems, key=lambda p: (p.field, p.message))


def _json_copy(value: object) -> object:
    """A deep copy of a JSON value (dicts and lists copied, scalars shared), ~5x faster than ``copy.deepcopy``;
    anything else is copied by ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: _json_copy(item) for key, item in value.items()}  # type: ignore[attr-defined]
    if kind is list:
        return [_json_copy(item) for item in value]  # type: ignore[attr-defined]
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    return copy.deepcopy(value)


def _apply_defaults(schema: Mapping[str, Any], value: object) -> object:
    """Fill missing object properties from their ``default`` (a deep copy), recursively; mutates ``value``."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        for name, subschema in properties.items():
            if not isinstance(subschema, dict):
                continue
            if name not in value and "default" in subschema:
                value[name] = copy.deepcopy(subschema["default"])
            if name in value:
                value[name] = _apply_defaults(subschema, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in value:
                if name not in properties:
                    value[name] = _apply_defaults(extra, value[name])
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                value[index] = _apply_defaults(items, item)
    return value


def _instance_problems(error: ValidationError, at: str) -> Iterable[Problem]:
    path = join_path(at, *error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # jsonschema reports a missing property at the parent object; the contract wants the property's path.
        for name in error.validator_value:
            if name not in error.instance:
                yield Problem(join_path(path, name), "is required")
        return
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        for name in error.instance:
            if name not in declared:
                yield Problem(join_path(path, name), "is not an allowed property")
        return
    yield Problem(path, _message(error))


def _plural(count: object, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _message(error: ValidationError) -> str:
    """A human message that names the rule, never the offending value (it may be a secret)."""
    rule, expected = error.validator, error.validator_value
    if rule == "type":
        names = expected if isinstance(expected, list) else [expected]
        return "must be of type " + " or ".join(str(n) for n in names)
    if rule == "minLength":
        return f"must be at least {_plural(expected, 'character')} long"
    if rule == "maxLength":
        return f"must be at most {_plural(expected, 'character')} long"
    if rule == "minItems":
        return f"must have at least {_plural(expected, 'item')}"
    if rule == "maxItems":
        return f"must have at most {_plural(expected, 'item')}"
    if rule == "minimum":
        return f"must be greater than or equal to {_number(expected)}"
    if rule == "maximum":
        return f"must be less than or equal to {_number(expected)}"
    if rule == "pattern":
        return f"must match the pattern {_json(expected)}"
    if rule == "enum":
        return "must be one of: " + ", ".join(_json(v) for v in expected)
    if rule == "const":
        return f"must be {_json(expected)}"
    if rule == "format":
        return f"must be a valid {expected}"
    return str(error.message)


def _number(value: object) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def merge_schemas(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The effective schema of a package: the kind's ``base`` schema extended by the package's ``overlay``.

    Top-level keywords of ``overlay`` win, except that ``properties`` are merged (``overlay`` wins per property:
    a package may relax a kind's property as well as narrow it) and ``required`` is the union (``base`` order
    first). Only write-only is kept: a property ``base`` makes write-only stays write-only, so that a package
    re-declaring the kind's ``client_secret`` without ``writeOnly`` does not have the secret shown on every read
    of its installs. Neither argument is modified.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for keyword, value in overlay.items():
        if keyword in ("properties", "required"):
            continue
        merged[keyword] = copy.deepcopy(value)
    base_properties = base.get("properties")
    overlay_properties = overlay.get("properties")
    if isinstance(base_properties, dict) or isinstance(overlay_properties, dict):
        properties = copy.deepcopy(base_properties) if isinstance(base_properties, dict) else {}
        if isinstance(overlay_properties, dict):
            for name, spec in overlay_properties.items():
                kept = properties.get(name)
                properties[name] = copy.deepcopy(spec)
                if isinstance(kept, dict) and kept.get("writeOnly") is True and isinstance(spec, dict):
                    properties[name]["writeOnly"] = True
        merged["properties"] = properties
    required: list[str] = []
    for names in (base.get("required"), overlay.get("required")):
        if isinstance(names, list):
            required.extend(n for n in names if n not in required)
    if required or "required" in base or "required" in overlay:
        merged["required"] = required
    return merged


def write_only_properties(schema: Mapping[str, Any]) -> frozenset[str]:
    """Names of the top-level properties marked ``writeOnly: true`` (never returned on read)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return frozenset()
    return frozenset(name for name, sub in properties.items() if isinstance(sub, dict) and sub.get("writeOnly") is True)


def strip_write_only(schema: Mapping[str, Any], value: object) -> tuple[object, bool]:
    """``value`` without the parts its schema marks ``writeOnly``, at any depth; and whether anything was removed.

    Follows ``properties``, ``additionalProperties`` and ``items``. A list whose items are write-only becomes ``[]``.
    ``value`` is not modified.
    """
    if isinstance(value, dict):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        extra = schema.get("additionalProperties")
        public: dict[str, Any] = {}
        removed = False
        for name, item in value.items():
            sub = properties.get(name) if name in properties else extra
            if not isinstance(sub, dict):
                public[name] = item
            elif sub.get("writeOnly") is True:
                removed = True
            else:
                public[name], inner = strip_write_only(sub, item)
                removed = removed or inner
        return public, removed
    if isinstance(value, list):
        items = schema.get("items")
        if not isinstance(items, dict):
            return value, False
        if items.get("writeOnly") is True:
            return [], bool(value)
        stripped = [strip_write_only(items, item) for item in value]
        return [item for item, _ in stripped], any(inner for _, inner in stripped)
    return value, False
