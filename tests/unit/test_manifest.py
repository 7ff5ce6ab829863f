"""Manifests: parsing, draft and release checks (design §4.2), manifest_sha, the entity graph, input state."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from importlib import resources
from typing import Any

import pytest

from zonecat.domain.bindings import compile_binding
from zonecat.domain.entity_types import ENTITY_TYPES
from zonecat.domain.kinds import KINDS
from zonecat.domain.manifest import (
    MAX_CEL_BYTES,
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestSyntaxError,
    canonical_json,
    draft_problems,
    input_state,
    load_manifest_text,
    manifest_sha,
    release_problems,
    slugify,
)
from zonecat.domain.problems import Problem
from zonecat.domain.schemas import check_schema, validate_instance, write_only_properties
from zonecat.errors import BadRequest

CATALOG = sorted(
    (entry.name, entry.read_text(encoding="utf-8"))
    for entry in resources.files("zonecat").joinpath("catalog").iterdir()
    if entry.name.endswith(".yaml")
)

DESIGN_EXAMPLE = """\
kind: api-server
name: Google Calendar API
description: Read and write Google Calendar on behalf of users.
icon_url: https://example.com/calendar.svg
tags: [google, calendar]
properties: {}
links:
  - {rel: describedby, href: https://developers.google.com/calendar, type: text/html}
inputs:
  schema:
    type: object
    required: [client_id, client_secret]
    properties:
      client_id: {type: string, minLength: 1}
      client_secret: {type: string, writeOnly: true}
      scopes: {type: array, items: {type: string}, default: ["https://www.googleapis.com/auth/calendar"]}
  bindings: |
    {"client_id": pkg.inputs.client_id, "client_secret": pkg.inputs.client_secret,
     "scopes": pkg.inputs.scopes, "issuer": "https://accounts.google.com"}
entities:
  google:
    type: provider
    bindings: |
      {"identifier": entities.inputs.issuer, "name": "Google",
       "client_id": entities.inputs.client_id, "client_secret": entities.inputs.client_secret}
  calendar:
    type: resource
    bindings: |
      {"identifier": "https://www.googleapis.com/calendar/v3", "name": "Google Calendar API",
       "scopes": entities.inputs.scopes, "credential_provider_id": entities.google.outputs.id}
    links:
      - {rel: credential-provider, href: "#google"}
outputs:
  schema:
    type: object
    properties: {resource_id: {type: string}, provider_id: {type: string}}
  bindings: |
    {"resource_id": entities.calendar.outputs.id, "provider_id": entities.google.outputs.id}
"""


@pytest.fixture
def raw() -> dict[str, Any]:
    return load_manifest_text(DESIGN_EXAMPLE)


def fields(problems: list[Problem]) -> list[str]:
    return [problem.field for problem in problems]


# -- parsing -----------------------------------------------------------------------------------------------------


def test_yaml_and_json_load_to_the_same_value(raw: dict[str, Any]) -> None:
    assert raw["entities"]["calendar"]["links"] == [{"rel": "credential-provider", "href": "#google"}]
    assert load_manifest_text(json.dumps(raw)) == raw
    assert load_manifest_text(json.dumps(raw, indent=2).encode()) == raw
    assert load_manifest_text(b"\xef\xbb\xbf" + DESIGN_EXAMPLE.encode()) == raw  # UTF-8 BOM


def test_syntax_error_is_a_bad_request_with_a_position() -> None:
    with pytest.raises(ManifestSyntaxError) as caught:
        load_manifest_text("name: x\nkind: [unclosed\n")
    assert isinstance(caught.value, BadRequest)
    assert caught.value.code == "bad_request"
    assert "line" in caught.value.message
    with pytest.raises(ManifestSyntaxError, match="line 1, column 10"):
        load_manifest_text('{"name": }')


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just text", "[1, 2]", "42", "null"])
def test_a_manifest_must_be_a_mapping(text: str) -> None:
    with pytest.raises(ManifestSyntaxError):
        load_manifest_text(text)


def test_yaml_aliases_are_refused() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    with pytest.raises(ManifestSyntaxError, match="aliases are not allowed"):
        load_manifest_text(bomb)
    with pytest.raises(ManifestSyntaxError, match="aliases are not allowed"):
        load_manifest_text("name: &n Linear\ndescription: *n\n")


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(ManifestSyntaxError, match="aliases are not allowed"):
        load_manifest_text("a: &a [*a]\n")


@pytest.mark.parametrize("text", ["name: a\nname: b\n", '{"name": "a", "name": "b"}'])
def test_duplicate_keys_are_refused(text: str) -> None:
    with pytest.raises(ManifestSyntaxError, match="duplicate key 'name'"):
        load_manifest_text(text)


def test_dates_stay_strings_and_non_json_values_are_refused() -> None:
    assert load_manifest_text("name: x\nreleased: 2024-01-01\n")["released"] == "2024-01-01"
    with pytest.raises(ManifestSyntaxError, match="keys must be strings"):
        load_manifest_text("1: one\n")
    with pytest.raises(ManifestSyntaxError, match="not a JSON number"):
        load_manifest_text("x: .nan\n")
    with pytest.raises(ManifestSyntaxError, match="not a JSON number"):
        load_manifest_text('{"x": NaN}')
    with pytest.raises(ManifestSyntaxError, match="bytes values are not allowed"):
        load_manifest_text("x: !!binary aGVsbG8=\n")


def test_text_size_and_nesting_limits() -> None:
    with pytest.raises(ManifestSyntaxError, match="limit is 10"):
        load_manifest_text("name: more than ten bytes\n", max_bytes=10)
    with pytest.raises(ManifestSyntaxError):
        load_manifest_text("x: " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManifestSyntaxError):
        load_manifest_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")


def test_nesting_is_limited_for_text_and_parsed_values() -> None:
    nested: object = "leaf"
    for _ in range(MAX_DEPTH + 1):
        nested = [nested]
    with pytest.raises(ManifestSyntaxError, match=f"nested more than {MAX_DEPTH} levels"):
        load_manifest_text(json.dumps({"name": "x", "kind": "custom", "properties": nested}))
    problems = release_problems({"name": "x", "kind": "custom", "properties": {"urn:x": nested}})
    assert len(problems) == 1
    assert problems[0].field.startswith("manifest.properties.urn:x[0][0]")
    assert "nested more than" in problems[0].message


def test_values_json_cannot_represent_are_draft_problems() -> None:
    assert draft_problems({"name": "x", "kind": "custom", "tags": {1, 2}}) == [
        Problem("manifest.tags", "set values are not allowed")
    ]
    assert draft_problems({"name": "x", "kind": "custom", "properties": {"n": float("inf")}}) == [
        Problem("manifest.properties.n", "inf is not a JSON number")
    ]


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(ManifestSyntaxError, match="UTF-8"):
        load_manifest_text(b"name: \xff\n")


# -- draft checks ------------------------------------------------------------------------------------------------


def test_a_draft_needs_only_name_and_kind() -> None:
    assert draft_problems({"name": "x", "kind": "anything"}) == []
    assert fields(draft_problems({})) == ["manifest.name", "manifest.kind"]
    assert fields(draft_problems({"name": "", "kind": 3})) == ["manifest.name", "manifest.kind"]
    assert fields(draft_problems({"name": "x" * 129, "kind": "custom"})) == ["manifest.name"]
    assert draft_problems({"name": "x" * 128, "kind": "custom"}) == []
    assert fields(draft_problems(["not", "a", "mapping"])) == ["manifest"]


def test_draft_size_limits_are_arguments(raw: dict[str, Any]) -> None:
    assert fields(draft_problems(raw, max_manifest_bytes=100)) == ["manifest"]
    assert fields(draft_problems(raw, max_entities=1)) == ["manifest.entities"]
    assert draft_problems(raw, max_entities=2) == []


# -- release checks ----------------------------------------------------------------------------------------------


def test_design_example_passes(raw: dict[str, Any]) -> None:
    assert release_problems(raw) == []


@pytest.mark.parametrize(("name", "text"), CATALOG)
def test_every_shipped_catalog_manifest_passes(name: str, text: str) -> None:
    raw = load_manifest_text(text)
    assert release_problems(raw) == [], name
    assert raw["kind"] == "api-server"
    manifest = Manifest.from_raw(raw)
    provider, resource = manifest.order()
    assert manifest.entities[provider].type == "provider"
    assert manifest.entities[resource].type == "resource"


def test_the_catalog_has_the_packages_design_7_requires() -> None:
    names = {name for name, _ in CATALOG}
    assert {"linear.yaml", "github.yaml", "google-calendar.yaml", "google-drive.yaml"} <= names


def _provisioned_identifiers(text: str) -> dict[str, str]:
    """Evaluate a catalog manifest's input and entity bindings with sample inputs; identifiers by local name."""
    raw = load_manifest_text(text)
    state = input_state(raw)
    pkg_inputs = {"client_id": "id", "client_secret": "secret"}
    for name, spec in state["effective_schema"]["properties"].items():
        if name not in pkg_inputs and "default" in spec:
            pkg_inputs[name] = spec["default"]
    entities_inputs = compile_binding(raw["inputs"]["bindings"], variables=["pkg"]).evaluate(
        {"pkg": {"inputs": pkg_inputs}}
    )
    scope: dict[str, Any] = {"inputs": entities_inputs}
    identifiers = {}
    for name in Manifest.from_raw(raw).order():
        attributes = compile_binding(raw["entities"][name]["bindings"], variables=["entities"]).evaluate(
            {"entities": scope}
        )
        assert isinstance(attributes, dict)
        # What the provisioner will validate: the evaluated attributes against the entity type's schema.
        entity_type = ENTITY_TYPES[raw["entities"][name]["type"]]
        assert validate_instance(entity_type.schema, attributes, name)[1] == []
        identifiers[name] = attributes["identifier"]
        scope[name] = {"href": f"/zones/z/x/{name}", "outputs": {"id": f"ent_{name}", **attributes}}
    return identifiers


@pytest.mark.parametrize(("name", "text"), CATALOG)
def test_every_catalog_package_provisions_valid_attributes(name: str, text: str) -> None:
    identifiers = _provisioned_identifiers(text)
    assert all(identifier.startswith("https://") for identifier in identifiers.values()), name


def test_catalog_identifiers_are_issuers_and_api_base_urls() -> None:
    texts = dict(CATALOG)
    assert _provisioned_identifiers(texts["linear.yaml"]) == {
        "linear": "https://linear.app",
        "linear_api": "https://api.linear.app",
    }
    assert _provisioned_identifiers(texts["github.yaml"]) == {
        "github": "https://github.com",
        "github_api": "https://api.github.com",
    }


def test_the_two_google_packages_share_one_provider() -> None:
    texts = dict(CATALOG)
    calendar = _provisioned_identifiers(texts["google-calendar.yaml"])
    drive = _provisioned_identifiers(texts["google-drive.yaml"])
    assert calendar == {"google": "https://accounts.google.com", "calendar": "https://www.googleapis.com/calendar/v3"}
    assert drive == {"google": "https://accounts.google.com", "drive": "https://www.googleapis.com/drive/v3"}


def _mutated(raw: dict[str, Any], path: list[str | int], value: object) -> dict[str, Any]:
    result = copy.deepcopy(raw)
    target: Any = result
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return result


DELETE = object()

CASES: list[tuple[str, list[str | int], object, str]] = [
    ("unknown top-level key", ["sources"], [], "manifest.sources"),
    ("unknown kind", ["kind"], "database", "manifest.kind"),
    ("kind missing", ["kind"], DELETE, "manifest.kind"),
    ("name too long", ["name"], "n" * 129, "manifest.name"),
    ("description not a string", ["description"], 7, "manifest.description"),
    ("icon_url not a string", ["icon_url"], ["x"], "manifest.icon_url"),
    ("tags not a list", ["tags"], "google", "manifest.tags"),
    ("a tag not a string", ["tags", 1], 5, "manifest.tags[1]"),
    ("properties not an object", ["properties"], [], "manifest.properties"),
    ("links not a list", ["links"], {}, "manifest.links"),
    ("link without rel", ["links", 0, "rel"], DELETE, "manifest.links[0].rel"),
    ("link without href", ["links", 0, "href"], DELETE, "manifest.links[0].href"),
    ("link with unknown key", ["links", 0, "method"], "GET", "manifest.links[0].method"),
    ("link type not a string", ["links", 0, "type"], 1, "manifest.links[0].type"),
    ("link titles not strings", ["links", 0, "titles"], {"en": 1}, "manifest.links[0].titles"),
    ("link properties not an object", ["links", 0, "properties"], [], "manifest.links[0].properties"),
    ("package link to a missing entity", ["links", 0, "href"], "#nothing", "manifest.links[0].href"),
    ("inputs not an object", ["inputs"], "x", "manifest.inputs"),
    ("unknown key in inputs", ["inputs", "defaults"], {}, "manifest.inputs.defaults"),
    (
        "rejected schema keyword",
        ["inputs", "schema", "properties", "x"],
        {"oneOf": [{"type": "string"}]},
        "manifest.inputs.schema.properties.x.oneOf",
    ),
    (
        "unknown schema keyword",
        ["inputs", "schema", "properties", "client_id", "secret"],
        True,
        "manifest.inputs.schema.properties.client_id.secret",
    ),
    ("input schema not an object schema", ["inputs", "schema", "type"], "array", "manifest.inputs.schema.type"),
    ("input bindings do not parse", ["inputs", "bindings"], '{"a": pkg.inputs.}', "manifest.inputs.bindings"),
    ("input bindings not a string", ["inputs", "bindings"], {"a": 1}, "manifest.inputs.bindings"),
    ("entities missing", ["entities"], DELETE, "manifest.entities"),
    ("entities not a map", ["entities"], ["google"], "manifest.entities"),
    ("entities empty", ["entities"], {}, "manifest.entities"),
    ("entity not an object", ["entities", "google"], "provider", "manifest.entities.google"),
    ("unknown key in an entity", ["entities", "google", "spec"], {}, "manifest.entities.google.spec"),
    ("unknown entity type", ["entities", "google", "type"], "idp", "manifest.entities.google.type"),
    ("entity type missing", ["entities", "google", "type"], DELETE, "manifest.entities.google.type"),
    ("entity bindings missing", ["entities", "google", "bindings"], DELETE, "manifest.entities.google.bindings"),
    ("entity bindings do not parse", ["entities", "google", "bindings"], "{", "manifest.entities.google.bindings"),
    (
        "entity bindings name a missing entity",
        ["entities", "calendar", "bindings"],
        '{"identifier": "x", "name": "y", "credential_provider_id": entities.gogle.outputs.id}',
        "manifest.entities.calendar.bindings",
    ),
    (
        "entity bindings with an attribute the type lacks",
        ["entities", "google", "bindings"],
        '{"identifier": "x", "name": "y", "scopes": []}',
        "manifest.entities.google.bindings",
    ),
    (
        "entity bindings without a required attribute",
        ["entities", "google", "bindings"],
        '{"identifier": "x"}',
        "manifest.entities.google.bindings",
    ),
    (
        "entity bindings that cannot be a map",
        ["entities", "google", "bindings"],
        '["identifier", "name"]',
        "manifest.entities.google.bindings",
    ),
    (
        "entity link to a missing entity",
        ["entities", "calendar", "links", 0, "href"],
        "#googel",
        "manifest.entities.calendar.links[0].href",
    ),
    ("entity links not a list", ["entities", "calendar", "links"], {}, "manifest.entities.calendar.links"),
    ("outputs not an object", ["outputs"], [], "manifest.outputs"),
    ("outputs without schema", ["outputs", "schema"], DELETE, "manifest.outputs.schema"),
    ("outputs without bindings", ["outputs", "bindings"], DELETE, "manifest.outputs.bindings"),
    (
        "output schema uses a rejected keyword",
        ["outputs", "schema", "properties", "resource_id", "anyOf"],
        [],
        "manifest.outputs.schema.properties.resource_id.anyOf",
    ),
    (
        "output bindings not a map literal",
        ["outputs", "bindings"],
        "entities.calendar.outputs",
        "manifest.outputs.bindings",
    ),
    (
        "output bindings with a key the schema lacks",
        ["outputs", "bindings"],
        '{"resource_id": "a", "provider_id": "b", "extra": 1}',
        "manifest.outputs.bindings",
    ),
    (
        "output bindings missing a schema property",
        ["outputs", "bindings"],
        '{"resource_id": entities.calendar.outputs.id}',
        "manifest.outputs.bindings",
    ),
    (
        "output bindings name a missing entity",
        ["outputs", "bindings"],
        '{"resource_id": entities.nothing.outputs.id, "provider_id": "b"}',
        "manifest.outputs.bindings",
    ),
]


@pytest.mark.parametrize(("path", "value", "field"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_release_check_reports_its_problem(
    raw: dict[str, Any], path: list[str | int], value: object, field: str
) -> None:
    problems = release_problems(_mutated(raw, path, value))
    assert field in fields(problems), problems
    for problem in problems:
        assert problem.field.startswith("manifest"), problem
        assert problem.message


@pytest.mark.parametrize("name", ["Google", "2fa", "has-dash", "x" * 64, "ünïcode", "", "_x", "in", "null"])
def test_invalid_entity_names(raw: dict[str, Any], name: str) -> None:
    raw["entities"][name] = {"type": "secret", "bindings": '{"identifier": "s", "name": "s"}'}
    assert fields(release_problems(raw)) == [f"manifest.entities.{name}"]


def test_inputs_is_a_reserved_entity_name(raw: dict[str, Any]) -> None:
    raw["entities"]["inputs"] = {"type": "secret", "bindings": '{"identifier": "s", "name": "s"}'}
    problems = release_problems(raw)
    assert fields(problems) == ["manifest.entities.inputs"]
    assert "reserved" in problems[0].message


def test_longest_entity_name_is_allowed(raw: dict[str, Any]) -> None:
    raw["entities"]["x" * 63] = {"type": "secret", "bindings": '{"identifier": "s", "name": "s"}'}
    assert release_problems(raw) == []


def test_a_cycle_is_named(raw: dict[str, Any]) -> None:
    raw["entities"]["google"]["links"] = [{"rel": "protects", "href": "#calendar"}]
    problems = release_problems(raw)
    assert problems == [Problem("manifest.entities", "entity graph has a cycle: calendar → google → calendar")]


def test_a_cycle_through_bindings_alone(raw: dict[str, Any]) -> None:
    raw["entities"]["google"]["bindings"] = '{"identifier": entities.calendar.outputs.identifier, "name": "Google"}'
    problems = release_problems(raw)
    assert problems == [Problem("manifest.entities", "entity graph has a cycle: calendar → google → calendar")]


def test_a_self_reference_is_a_cycle(raw: dict[str, Any]) -> None:
    raw["entities"]["calendar"]["links"].append({"rel": "self", "href": "#calendar"})
    assert release_problems(raw) == [Problem("manifest.entities", "entity graph has a cycle: calendar → calendar")]


def test_references_inside_string_literals_are_not_dependencies(raw: dict[str, Any]) -> None:
    raw["entities"]["google"]["bindings"] = '{"identifier": "entities.calendar.outputs.id", "name": "Google"}'
    assert release_problems(raw) == []


def test_cel_size_limit_is_an_argument(raw: dict[str, Any]) -> None:
    problems = release_problems(raw, max_cel_bytes=100)
    assert set(fields(problems)) == {
        "manifest.inputs.bindings",
        "manifest.entities.google.bindings",
        "manifest.entities.calendar.bindings",
    }
    assert all("limit is 100" in problem.message for problem in problems)
    too_long = '{"identifier": "' + "x" * MAX_CEL_BYTES + '", "name": "n"}'
    raw["entities"]["google"]["bindings"] = too_long
    assert fields(release_problems(raw)) == ["manifest.entities.google.bindings"]


def test_oversized_manifests_are_not_checked_further(raw: dict[str, Any]) -> None:
    raw["kind"] = "nonsense"
    assert fields(release_problems(raw, max_manifest_bytes=200)) == ["manifest"]
    assert fields(release_problems(raw, max_entities=1)) == ["manifest.entities"]
    assert fields(release_problems(raw)) == ["manifest.kind"]


def test_all_problems_are_reported_at_once(raw: dict[str, Any]) -> None:
    broken = copy.deepcopy(raw)
    broken["kind"] = "database"
    broken["colour"] = "blue"
    broken["tags"] = ["ok", 1]
    broken["inputs"]["schema"]["properties"]["mode"] = {"oneOf": [{"const": "a"}]}
    broken["entities"]["google"]["type"] = "idp"
    broken["entities"]["calendar"]["bindings"] = '{"identifier": entities.gogle.outputs.id'
    broken["entities"]["calendar"]["links"][0]["href"] = "#nowhere"
    broken["outputs"]["bindings"] = '{"resource_id": "x"}'
    assert set(fields(release_problems(broken))) == {
        "manifest.colour",
        "manifest.kind",
        "manifest.tags[1]",
        "manifest.inputs.schema.properties.mode.oneOf",
        "manifest.entities.google.type",
        "manifest.entities.calendar.bindings",
        "manifest.entities.calendar.links[0].href",
        "manifest.outputs.bindings",
    }


def test_release_problems_of_a_non_mapping() -> None:
    assert fields(release_problems("kind: custom")) == ["manifest"]


def test_a_minimal_custom_package_passes() -> None:
    raw = {
        "kind": "custom",
        "name": "Token",
        "entities": {"token": {"type": "secret", "bindings": '{"identifier": "t", "name": "Token"}'}},
    }
    assert release_problems(raw) == []


@pytest.mark.parametrize(
    ("bindings", "message"),
    [
        ('["identifier", "name"]', "is always a list, not a map"),
        ('"provider"', "is always a string, not a map"),
        ("1 + 2", "is always a number, not a map"),
        ("null", "is always null, not a map"),
        ("1 / 0", "always fails"),
    ],
)
def test_variable_free_entity_bindings_must_be_a_map(raw: dict[str, Any], bindings: str, message: str) -> None:
    raw["entities"]["google"]["bindings"] = bindings
    problems = release_problems(raw)
    assert fields(problems) == ["manifest.entities.google.bindings"]
    assert message in problems[0].message


def test_variable_free_input_bindings_must_be_a_map(raw: dict[str, Any]) -> None:
    raw["inputs"]["bindings"] = "[1, 2]"
    problems = release_problems(raw)
    assert fields(problems) == ["manifest.inputs.bindings"]
    assert "is always a list" in problems[0].message


def test_entity_bindings_that_may_be_a_map_are_accepted(raw: dict[str, Any]) -> None:
    # Not literals, but maps at run time: only evaluation can tell, so release accepts them.
    raw["inputs"]["bindings"] = '{"provider": {"identifier": "https://accounts.google.com", "name": "Google"}}'
    raw["entities"]["google"]["bindings"] = "entities.inputs.provider"
    raw["entities"]["calendar"]["bindings"] = (
        '"x" in entities.inputs ? {"identifier": "a", "name": "b"} : {"identifier": "c", "name": "d"}'
    )
    raw["entities"]["calendar"]["links"] = []
    assert release_problems(raw) == []
    raw["entities"]["calendar"]["bindings"] = '{"identifier": "a"}.size() > 0 ? {"identifier": "a", "name": "b"} : {}'
    assert release_problems(raw) == []


def _generated(count: int) -> dict[str, Any]:
    """A package of ``count`` secrets, each depending on the previous one (a chain: the deepest graph there is).

    Compact on purpose: 10,000 entities must also fit the 1 MiB manifest limit.
    """
    entities: dict[str, Any] = {"s0": {"type": "secret", "bindings": '{"identifier":"s0","name":"s"}'}}
    for index in range(1, count):
        entities[f"s{index}"] = {
            "type": "secret",
            "bindings": f'{{"identifier":"s{index}","name":entities.s{index - 1}.outputs.id}}',
        }
    return {
        "kind": "custom",
        "name": "Many secrets",
        "entities": entities,
        "outputs": {
            "schema": {"type": "object", "properties": {"last": {"type": "string"}}},
            "bindings": f'{{"last": entities.s{count - 1}.outputs.id}}',
        },
    }


def test_ten_thousand_entities_pass() -> None:
    raw = _generated(10_000)
    assert len(canonical_json(raw)) <= MAX_MANIFEST_BYTES
    started = time.perf_counter()
    assert release_problems(raw) == []
    elapsed = time.perf_counter() - started
    order = Manifest.from_raw(raw).order()
    assert order[0] == "s0"
    assert order[-1] == "s9999"
    assert len(order) == 10_000
    print(f"release checks of 10,000 entities: {elapsed:.2f} s")


def test_one_entity_too_many() -> None:
    assert fields(release_problems(_generated(3), max_entities=2)) == ["manifest.entities"]


# -- manifest_sha ------------------------------------------------------------------------------------------------


def test_manifest_sha_is_the_sha256_of_canonical_json(raw: dict[str, Any]) -> None:
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert manifest_sha(raw) == hashlib.sha256(canonical).hexdigest()
    assert len(manifest_sha(raw)) == 64


def test_manifest_sha_ignores_key_order_and_formatting(raw: dict[str, Any]) -> None:
    reordered = json.loads(json.dumps(raw, sort_keys=True, indent=4))
    reordered = dict(reversed(list(reordered.items())))
    assert list(reordered) != list(raw)
    assert manifest_sha(reordered) == manifest_sha(raw)
    assert manifest_sha(load_manifest_text(json.dumps(raw))) == manifest_sha(raw)


def test_manifest_sha_changes_with_content(raw: dict[str, Any]) -> None:
    changed = copy.deepcopy(raw)
    changed["tags"].append("new")
    assert manifest_sha(changed) != manifest_sha(raw)
    assert manifest_sha({"name": "é"}) == hashlib.sha256('{"name":"é"}'.encode()).hexdigest()


# -- Manifest ----------------------------------------------------------------------------------------------------


def test_manifest_from_raw(raw: dict[str, Any]) -> None:
    manifest = Manifest.from_raw(raw)
    assert manifest.kind == "api-server"
    assert manifest.name == "Google Calendar API"
    assert manifest.tags == ("google", "calendar")
    assert manifest.inputs_schema == raw["inputs"]["schema"]
    assert manifest.outputs_bindings == raw["outputs"]["bindings"]
    assert set(manifest.entities) == {"google", "calendar"}
    calendar = manifest.entities["calendar"]
    assert (calendar.name, calendar.type) == ("calendar", "resource")
    assert calendar.links == ({"rel": "credential-provider", "href": "#google"},)
    assert manifest.dependencies() == {"google": set(), "calendar": {"google"}}
    assert manifest.order() == ["google", "calendar"]


def test_dependencies_come_from_links_and_bindings_alike() -> None:
    raw = {
        "kind": "custom",
        "name": "Graph",
        "entities": {
            "app": {"type": "application", "bindings": '{"identifier": "app", "name": "App"}'},
            "credential": {
                "type": "application_credential",
                "bindings": '{"identifier": "c", "type": "token", "application_id": entities.app.outputs.id,'
                ' "provider_id": entities.idp.outputs.id}',
            },
            "idp": {"type": "provider", "bindings": '{"identifier": "https://idp", "name": "IdP"}'},
            "api": {
                "type": "resource",
                "bindings": '{"identifier": "https://api", "name": "API"}',
                "links": [{"rel": "credential-provider", "href": "#idp"}, {"rel": "docs", "href": "https://x"}],
            },
        },
    }
    assert release_problems(raw) == []
    manifest = Manifest.from_raw(raw)
    assert manifest.dependencies() == {"app": set(), "credential": {"app", "idp"}, "idp": set(), "api": {"idp"}}
    assert manifest.order() == ["app", "idp", "api", "credential"]


# -- input state -------------------------------------------------------------------------------------------------


def test_input_state_of_the_google_calendar_package() -> None:
    state = input_state(load_manifest_text(dict(CATALOG)["google-calendar.yaml"]))
    schema = state["effective_schema"]
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"client_id", "client_secret"}
    assert set(schema["properties"]) == {"client_id", "client_secret", "scopes"}
    assert schema["properties"]["client_secret"]["writeOnly"] is True
    assert schema["properties"]["scopes"]["default"] == ["https://www.googleapis.com/auth/calendar"]
    assert state["effective_bindings"] == {
        "client_id": {"$input": "client_id"},
        "client_secret": {"$input": "client_secret"},
        "scopes": {"$input": "scopes"},
        "issuer": "https://accounts.google.com",
    }


@pytest.mark.parametrize(("name", "text"), CATALOG)
def test_input_state_of_every_catalog_package(name: str, text: str) -> None:
    state = input_state(load_manifest_text(text))
    assert {"client_id", "client_secret"} <= set(state["effective_schema"]["required"]), name
    bindings = state["effective_bindings"]
    assert bindings["client_id"] == {"$input": "client_id"}
    assert bindings["client_secret"] == {"$input": "client_secret"}
    assert isinstance(bindings["issuer"], str)
    assert bindings["issuer"].startswith("https://")


def test_input_state_merges_the_kind_schema() -> None:
    raw = {
        "kind": "api-server",
        "name": "Tiny",
        "inputs": {"schema": {"type": "object", "properties": {"region": {"type": "string"}}}},
    }
    state = input_state(raw)
    assert set(state["effective_schema"]["properties"]) == {"client_id", "client_secret", "scopes", "region"}
    assert state["effective_schema"]["required"] == ["client_id", "client_secret"]
    # Without input bindings the install inputs are entities.inputs: every property maps to itself.
    assert state["effective_bindings"] == {
        "client_id": {"$input": "client_id"},
        "client_secret": {"$input": "client_secret"},
        "scopes": {"$input": "scopes"},
        "region": {"$input": "region"},
    }


def test_input_state_of_a_custom_package_without_inputs() -> None:
    assert input_state({"kind": "custom", "name": "x"}) == {
        "effective_schema": {"type": "object"},
        "effective_bindings": {},
    }


def test_input_state_of_an_unknown_kind_uses_only_the_package_schema() -> None:
    raw = {"kind": "future", "name": "x", "inputs": {"schema": {"type": "object", "properties": {"a": {}}}}}
    assert input_state(raw)["effective_schema"] == {"type": "object", "properties": {"a": {}}}


# -- kinds -------------------------------------------------------------------------------------------------------


def test_the_shipped_kinds() -> None:
    assert set(KINDS) == {"api-server", "mcp-server", "application", "custom"}
    for kind in KINDS.values():
        assert check_schema(kind.schema, f"kinds.{kind.name}") == [], kind.name
        assert kind.schema["type"] == "object"
    assert KINDS["custom"].schema == {"type": "object"}
    api_server = KINDS["api-server"].schema
    assert api_server["required"] == ["client_id", "client_secret"]
    assert write_only_properties(api_server) == frozenset({"client_secret"})
    assert api_server["properties"]["scopes"]["items"]["type"] == "string"


# -- slugify -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Google Calendar API", "google-calendar-api"),
        ("  GitHub — REST/GraphQL!  ", "github-rest-graphql"),
        ("Café Crème", "cafe-creme"),
        ("snake_case_name", "snake-case-name"),
        ("---", "package"),
        ("", "package"),
        ("日本語", "package"),
        ("a" * 70, "a" * 63),
        ("a" * 62 + " b", "a" * 62),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_slugs_match_keycards_pattern() -> None:
    for name, text in CATALOG:
        slug = slugify(load_manifest_text(text)["name"])
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", slug), name
        assert len(slug) <= 63
