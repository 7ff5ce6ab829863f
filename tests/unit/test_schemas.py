"""The JSON Schema keyword subset: metaschema enforcement, instance validation, defaults, merging."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from zonecat.domain.problems import Problem
from zonecat.domain.schemas import (
    ALLOWED_KEYWORDS,
    METASCHEMA,
    REJECTED_KEYWORDS,
    check_schema,
    merge_schemas,
    validate_instance,
    write_only_properties,
)

AT = "manifest.inputs.schema"


def fields(problems: list[Problem]) -> list[str]:
    return [p.field for p in problems]


# ---------------------------------------------------------------------------------------------- check_schema


def test_metaschema_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(METASCHEMA)


def test_a_schema_using_every_allowed_keyword_passes() -> None:
    schema = {
        "type": "object",
        "title": "Inputs",
        "description": "All of them",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z]+$", "default": "x"},
            "secret": {"type": "string", "writeOnly": True},
            "id": {"type": "string", "readOnly": True, "format": "uuid"},
            "count": {"type": "integer", "minimum": 0, "maximum": 10.5},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 0, "maxItems": 3},
            "mode": {"enum": ["a", "b"]},
            "fixed": {"const": 1},
            "either": {"type": ["string", "null"]},
            "map": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    }
    assert check_schema(schema, AT) == []


def test_the_empty_schema_and_the_2020_12_dialect_uri_are_accepted() -> None:
    assert check_schema({}, AT) == []
    assert check_schema({"$schema": "https://json-schema.org/draft/2020-12/schema"}, AT) == []


def test_another_dialect_uri_is_rejected() -> None:
    problems = check_schema({"$schema": "http://json-schema.org/draft-07/schema#"}, AT)
    assert fields(problems) == [f"{AT}.$schema"]


@pytest.mark.parametrize("keyword", REJECTED_KEYWORDS)
def test_each_rejected_keyword_is_one_problem_at_its_path(keyword: str) -> None:
    schema = {"type": "object", "properties": {"mode": {"type": "string", keyword: []}}}
    problems = check_schema(schema, AT)
    assert len(problems) == 1
    assert problems[0].field == f"{AT}.properties.mode.{keyword}"
    assert f"keyword {keyword!r} is not supported" in problems[0].message
    assert "allowed: type, properties" in problems[0].message


def test_unknown_keywords_are_rejected_one_problem_each() -> None:
    schema = {"type": "object", "x-custom": 1, "dependentRequired": {}, "properties": {"a": {"examples": []}}}
    problems = check_schema(schema, AT)
    assert fields(problems) == [f"{AT}.dependentRequired", f"{AT}.properties.a.examples", f"{AT}.x-custom"]
    assert all(p.message.startswith("unknown keyword") for p in problems)


def test_all_problems_are_reported_at_once() -> None:
    schema = {
        "oneOf": [],
        "properties": {
            "a": {"anyOf": []},
            "b": {"items": {"$ref": "#/x"}},
            "c": {"additionalProperties": {"not": {}}},
        },
    }
    assert fields(check_schema(schema, AT)) == [
        f"{AT}.oneOf",
        f"{AT}.properties.a.anyOf",
        f"{AT}.properties.b.items.$ref",
        f"{AT}.properties.c.additionalProperties.not",
    ]


def test_a_property_named_like_a_rejected_keyword_is_fine() -> None:
    assert check_schema({"properties": {"oneOf": {"type": "string"}, "$ref": {}}}, AT) == []


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [
        ("minimum", "zero", "must be of type number"),
        ("maximum", True, "must be of type number"),
        ("minLength", -1, "must be greater than or equal to 0"),
        ("maxLength", 1.5, "must be of type integer"),
        ("minItems", "1", "must be of type integer"),
        ("maxItems", -3, "must be greater than or equal to 0"),
        ("pattern", "([a-z", "must be a valid regular expression"),
        ("pattern", 5, "must be of type string"),
        ("type", "strng", "must be one of"),
        ("type", [], "must have at least 1 item"),
        ("type", ["string", "string"], "must not contain duplicates"),
        ("required", "name", "must be of type array"),
        ("required", ["a", "a"], "must not contain duplicates"),
        ("properties", [], "must be of type object"),
        ("items", True, "must be of type object"),
        ("additionalProperties", 3, "must be of type boolean or object"),
        ("enum", [], "must have at least 1 item"),
        ("readOnly", "yes", "must be of type boolean"),
        ("writeOnly", 1, "must be of type boolean"),
        ("title", 1, "must be of type string"),
        ("description", None, "must be of type string"),
        ("format", 1, "must be of type string"),
    ],
)
def test_bad_keyword_values(keyword: str, value: object, message: str) -> None:
    problems = check_schema({"properties": {"p": {keyword: value}}}, AT)
    assert len(problems) == 1, problems
    assert problems[0].field.startswith(f"{AT}.properties.p.{keyword}")
    assert message in problems[0].message


def test_defaults_must_match_their_own_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "port": {"type": "integer", "default": "80"},
            "tags": {"type": "array", "items": {"type": "string", "default": 1}, "default": ["a", 2]},
            "ok": {"type": "string", "default": "fine"},
        },
    }
    assert check_schema(schema, AT) == [
        Problem(f"{AT}.properties.port.default", "must be of type integer"),
        Problem(f"{AT}.properties.tags.default[1]", "must be of type string"),
        Problem(f"{AT}.properties.tags.items.default", "must be of type string"),
    ]


def test_bad_type_in_a_type_list_points_at_the_entry() -> None:
    problems = check_schema({"type": ["string", "bogus"]}, AT)
    assert fields(problems) == [f"{AT}.type[1]"]


def test_recurses_through_items_and_additional_properties() -> None:
    schema = {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": {"type": "object", "properties": {"deep": {"minimum": "x", "allOf": []}}},
        },
    }
    assert fields(check_schema(schema, AT)) == [
        f"{AT}.items.additionalProperties.properties.deep.allOf",
        f"{AT}.items.additionalProperties.properties.deep.minimum",
    ]


@pytest.mark.parametrize("schema", [None, [], "string", 3, True])
def test_a_schema_that_is_not_an_object_is_one_problem(schema: object) -> None:
    assert check_schema(schema, AT) == [Problem(AT, "must be a JSON Schema object")]


def test_metaschema_lists_exactly_the_allowed_keywords() -> None:
    names = METASCHEMA["$defs"]["schema"]["propertyNames"]["enum"]
    assert set(names) == {"$schema", *ALLOWED_KEYWORDS}
    assert not set(REJECTED_KEYWORDS) & set(names)


# ------------------------------------------------------------------------------------------ validate_instance

INPUTS: dict[str, Any] = {
    "type": "object",
    "required": ["client_id", "client_secret"],
    "properties": {
        "client_id": {"type": "string", "minLength": 1},
        "client_secret": {"type": "string", "writeOnly": True},
        "scopes": {"type": "array", "items": {"type": "string"}, "default": ["calendar"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 4},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "mode": {"enum": ["fast", "slow"]},
        "email": {"type": "string", "format": "email"},
        "slug": {"type": "string", "pattern": "^[a-z]+$"},
    },
}


def test_valid_instance_has_no_problems_and_gets_defaults() -> None:
    value, problems = validate_instance(INPUTS, {"client_id": "a", "client_secret": "s"}, "inputs")
    assert problems == []
    assert value == {"client_id": "a", "client_secret": "s", "scopes": ["calendar"]}


def test_the_instance_and_the_default_are_not_mutated() -> None:
    instance = {"client_id": "a", "client_secret": "s"}
    schema = copy.deepcopy(INPUTS)
    value, _ = validate_instance(schema, instance, "inputs")
    assert isinstance(value, dict)
    value["scopes"].append("more")
    assert instance == {"client_id": "a", "client_secret": "s"}
    assert schema == INPUTS


def test_given_values_win_over_defaults() -> None:
    value, problems = validate_instance(INPUTS, {"client_id": "a", "client_secret": "s", "scopes": []}, "inputs")
    assert problems == []
    assert isinstance(value, dict) and value["scopes"] == []


def test_nested_defaults_are_applied() -> None:
    schema = {
        "type": "object",
        "properties": {
            "limits": {
                "type": "object",
                "default": {},
                "properties": {"cpu": {"type": "integer", "default": 2}, "mem": {"type": "string"}},
            },
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"enabled": {"type": "boolean", "default": True}}},
            },
            "env": {
                "type": "object",
                "additionalProperties": {"type": "object", "properties": {"ttl": {"default": 60}}},
            },
        },
    }
    value, problems = validate_instance(schema, {"items": [{}, {"enabled": False}], "env": {"A": {}}}, "inputs")
    assert problems == []
    assert value == {
        "limits": {"cpu": 2},
        "items": [{"enabled": True}, {"enabled": False}],
        "env": {"A": {"ttl": 60}},
    }


def test_each_violation_is_one_problem_at_the_offending_value() -> None:
    instance = {
        "client_id": "",
        "tags": ["ok", "fine", "toolong", 3],
        "port": 0,
        "mode": "medium",
        "email": "not-an-email",
        "slug": "Web_App",
    }
    _, problems = validate_instance(INPUTS, instance, "inputs")
    assert problems == [
        Problem("inputs.client_id", "must be at least 1 character long"),
        Problem("inputs.client_secret", "is required"),
        Problem("inputs.email", "must be a valid email"),
        Problem("inputs.mode", 'must be one of: "fast", "slow"'),
        Problem("inputs.port", "must be greater than or equal to 1"),
        Problem("inputs.slug", 'must match the pattern "^[a-z]+$"'),
        Problem("inputs.tags[2]", "must be at most 5 characters long"),
        Problem("inputs.tags[3]", "must be of type string"),
    ]


def test_missing_required_properties_are_reported_at_their_own_path() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b"],
        "properties": {"nested": {"type": "object", "required": ["c"]}},
    }
    _, problems = validate_instance(schema, {"nested": {}}, "inputs")
    assert problems == [
        Problem("inputs.a", "is required"),
        Problem("inputs.b", "is required"),
        Problem("inputs.nested.c", "is required"),
    ]


def test_extra_properties_are_reported_at_their_own_path() -> None:
    schema = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    _, problems = validate_instance(schema, {"a": 1, "x": 2, "y": 3}, "inputs")
    assert problems == [
        Problem("inputs.x", "is not an allowed property"),
        Problem("inputs.y", "is not an allowed property"),
    ]


def test_additional_properties_schema_errors_point_into_the_value() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer", "maximum": 3}}
    _, problems = validate_instance(schema, {"a": 1, "b": 9}, "inputs")
    assert problems == [Problem("inputs.b", "must be less than or equal to 3")]


def test_messages_never_echo_the_value() -> None:
    schema = {"type": "object", "properties": {"secret": {"type": "string", "writeOnly": True, "maxLength": 3}}}
    _, problems = validate_instance(schema, {"secret": "hunter2-very-secret"}, "inputs")
    assert len(problems) == 1
    assert "hunter2" not in problems[0].message


@pytest.mark.parametrize(
    ("schema", "instance", "message"),
    [
        ({"type": "integer"}, True, "must be of type integer"),
        ({"type": ["string", "null"]}, 1, "must be of type string or null"),
        ({"minItems": 2}, [1], "must have at least 2 items"),
        ({"maxItems": 1}, [1, 2], "must have at most 1 item"),
        ({"maxLength": 1}, "ab", "must be at most 1 character long"),
        ({"const": "x"}, "y", 'must be "x"'),
        ({"maximum": 1.5}, 2, "must be less than or equal to 1.5"),
        ({"format": "uuid"}, "nope", "must be a valid uuid"),
    ],
)
def test_messages(schema: dict[str, Any], instance: object, message: str) -> None:
    _, problems = validate_instance(schema, instance, "outputs")
    assert problems == [Problem("outputs", message)]


def test_integer_accepts_a_whole_float() -> None:
    assert validate_instance({"type": "integer"}, 3.0, "x")[1] == []


def test_problems_are_sorted_by_field() -> None:
    schema = {"type": "object", "properties": {k: {"type": "string"} for k in "dcba"}}
    _, problems = validate_instance(schema, {k: 1 for k in "abcd"}, "inputs")
    assert fields(problems) == ["inputs.a", "inputs.b", "inputs.c", "inputs.d"]


def test_an_invalid_schema_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="oneOf"):
        validate_instance({"oneOf": []}, {}, "inputs")


def test_validators_are_cached_per_schema() -> None:
    from zonecat.domain import schemas

    schemas._validator.cache_clear()
    for _ in range(3):
        validate_instance({"type": "object", "properties": {"a": {}}}, {}, "x")
        validate_instance({"properties": {"a": {}}, "type": "object"}, {}, "x")  # same canonical JSON
    info = schemas._validator.cache_info()
    assert info.misses == 1 and info.hits == 5


# -------------------------------------------------------------------------------------- merge, write-only


def test_merge_schemas_merges_properties_and_unions_required() -> None:
    base = {
        "type": "object",
        "required": ["client_id", "scopes"],
        "properties": {"client_id": {"type": "string"}, "scopes": {"type": "array"}},
    }
    overlay = {
        "type": "object",
        "description": "package inputs",
        "required": ["scopes", "region"],
        "properties": {"scopes": {"type": "array", "items": {"type": "string"}}, "region": {"type": "string"}},
    }
    merged = merge_schemas(base, overlay)
    assert merged == {
        "type": "object",
        "description": "package inputs",
        "required": ["client_id", "scopes", "region"],
        "properties": {
            "client_id": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "region": {"type": "string"},
        },
    }
    assert base["required"] == ["client_id", "scopes"]  # not mutated
    merged["properties"]["client_id"]["minLength"] = 1
    assert base["properties"]["client_id"] == {"type": "string"}


def test_a_property_both_define_is_the_package_s_but_stays_write_only() -> None:
    base = {
        "properties": {
            "client_id": {"type": "string", "minLength": 1, "title": "OAuth client ID"},
            "client_secret": {"type": "string", "minLength": 1, "writeOnly": True},
        }
    }
    overlay = {
        "properties": {
            "client_id": {"type": "string", "pattern": "^[a-z]+$", "title": "Linear client ID"},
            "client_secret": {"type": "string", "writeOnly": False, "description": "from the vendor"},
        }
    }
    merged = merge_schemas(base, overlay)["properties"]
    assert merged["client_id"] == {"type": "string", "pattern": "^[a-z]+$", "title": "Linear client ID"}
    assert merged["client_secret"] == {"type": "string", "writeOnly": True, "description": "from the vendor"}


def test_merge_with_the_empty_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    assert merge_schemas({}, schema) == schema
    assert merge_schemas(schema, {}) == schema
    assert merge_schemas({}, {}) == {}


def test_write_only_properties() -> None:
    assert write_only_properties(INPUTS) == frozenset({"client_secret"})
    assert write_only_properties({"properties": {"a": {"writeOnly": False}}}) == frozenset()
    assert write_only_properties({}) == frozenset()


def test_strip_write_only_follows_properties_items_and_additional_properties() -> None:
    from zonecat.domain.schemas import strip_write_only

    schema = {
        "type": "object",
        "properties": {
            "top": {"type": "string", "writeOnly": True},
            "nested": {"type": "object", "properties": {"s": {"type": "string", "writeOnly": True}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"v": {"writeOnly": True}}}},
            "all_secret": {"type": "array", "items": {"type": "string", "writeOnly": True}},
            "plain": {"type": "string"},
        },
        "additionalProperties": {"type": "object", "properties": {"k": {"writeOnly": True}}},
    }
    value = {
        "top": "x",
        "nested": {"s": "y", "t": 1},
        "list": [{"v": 1, "w": 2}],
        "all_secret": ["a"],
        "plain": "p",
        "extra": {"k": 1, "j": 2},
    }
    public, removed = strip_write_only(schema, value)
    assert removed
    assert public == {"nested": {"t": 1}, "list": [{"w": 2}], "all_secret": [], "plain": "p", "extra": {"j": 2}}
    assert value["top"] == "x" and value["nested"] == {"s": "y", "t": 1}  # not modified
    assert strip_write_only(schema, {"plain": "p"}) == ({"plain": "p"}, False)
