"""The built-in entity types are data: loaded from zonecat/data/entity_types.yaml and consistent with design §5."""

from __future__ import annotations

import pytest

from zonecat.domain.entity_types import ENTITY_TYPES, EntityType, by_collection, read_attributes
from zonecat.domain.schemas import check_schema, validate_instance


def test_the_five_built_in_types_and_their_collections() -> None:
    assert {name: t.collection for name, t in ENTITY_TYPES.items()} == {
        "provider": "providers",
        "resource": "resources",
        "application": "applications",
        "application_credential": "application-credentials",
        "secret": "secrets",
    }


@pytest.mark.parametrize("entity_type", list(ENTITY_TYPES.values()), ids=lambda t: t.name)
def test_every_type_is_well_formed(entity_type: EntityType) -> None:
    assert check_schema(entity_type.schema, f"entity_types.{entity_type.name}") == []
    assert entity_type.key == ("identifier",)
    assert entity_type.schema["additionalProperties"] is False
    assert "identifier" in entity_type.required
    assert set(entity_type.required) <= set(entity_type.schema["properties"])


def test_required_and_write_only_attributes() -> None:
    assert ENTITY_TYPES["provider"].required == ("identifier", "name")
    assert ENTITY_TYPES["application_credential"].required == ("identifier", "type", "application_id")
    assert ENTITY_TYPES["provider"].write_only == frozenset({"client_secret"})
    assert ENTITY_TYPES["secret"].write_only == frozenset({"data"})
    for name in ("resource", "application", "application_credential"):
        assert ENTITY_TYPES[name].write_only == frozenset()


def test_by_collection() -> None:
    assert by_collection("providers") is ENTITY_TYPES["provider"]
    assert by_collection("application-credentials") is ENTITY_TYPES["application_credential"]
    assert by_collection("provider") is None
    assert by_collection("users") is None


def test_entity_types_are_read_only() -> None:
    with pytest.raises(TypeError):
        ENTITY_TYPES["user"] = ENTITY_TYPES["provider"]  # type: ignore[index]


def test_provider_schema_uses_keycard_constraints() -> None:
    schema = ENTITY_TYPES["provider"].schema
    good = {
        "identifier": "https://accounts.google.com",
        "name": "Google",
        "client_id": "abc",
        "client_secret": "s3cret",
        "protocols": {"oauth2": {"token_endpoint": "https://oauth2.googleapis.com/token"}},
        "metadata": {"docs_url": "https://developers.google.com"},
    }
    _, problems = validate_instance(schema, good, "attributes")
    assert problems == []

    bad = {"identifier": "x" * 2049, "name": "", "scopes": ["read"], "protocols": {"saml": {}}}
    _, problems = validate_instance(schema, bad, "attributes")
    fields = {problem.field for problem in problems}
    assert "attributes.identifier" in fields  # longer than 2048
    assert "attributes.name" in fields  # shorter than 1
    assert len(problems) >= 4  # plus `scopes` and `protocols.saml`, which a provider does not have


def test_resource_schema() -> None:
    schema = ENTITY_TYPES["resource"].schema
    resource = {
        "identifier": "https://api.linear.app",
        "name": "Linear API",
        "scopes": ["read", "write"],
        "credential_provider_id": "ent_01",
    }
    assert validate_instance(schema, resource, "attributes")[1] == []
    _, problems = validate_instance(schema, {**resource, "scopes": "read"}, "attributes")
    assert [problem.field for problem in problems] == ["attributes.scopes"]
    _, problems = validate_instance(schema, {"name": "no identifier"}, "attributes")
    assert [problem.field for problem in problems] == ["attributes.identifier"]


def test_secret_data_shape() -> None:
    schema = ENTITY_TYPES["secret"].schema
    secret = {"identifier": "linear-token", "name": "Linear token", "data": {"type": "token", "token": "t"}}
    assert validate_instance(schema, secret, "attributes")[1] == []
    _, problems = validate_instance(schema, {**secret, "data": {"type": "certificate"}}, "attributes")
    assert problems


def test_read_attributes_hides_write_only_values() -> None:
    provider = ENTITY_TYPES["provider"]
    stored = {"identifier": "https://github.com", "name": "GitHub", "client_id": "id", "client_secret": "s"}
    shown = read_attributes(provider, stored)
    assert shown == {"identifier": "https://github.com", "name": "GitHub", "client_id": "id", "client_secret_set": True}
    assert "client_secret" in stored  # the input is not modified


def test_read_attributes_without_a_secret_says_nothing() -> None:
    provider = ENTITY_TYPES["provider"]
    assert read_attributes(provider, {"identifier": "i", "name": "n"}) == {"identifier": "i", "name": "n"}
    assert read_attributes(provider, {"identifier": "i", "name": "n", "client_secret": None}) == {
        "identifier": "i",
        "name": "n",
    }


def test_read_attributes_of_a_secret() -> None:
    secret = ENTITY_TYPES["secret"]
    stored = {"identifier": "i", "name": "n", "data": {"type": "password", "username": "u", "password": "p"}}
    assert read_attributes(secret, stored) == {"identifier": "i", "name": "n", "data_set": True}


def test_read_attributes_of_a_type_without_write_only_fields_is_a_copy() -> None:
    resource = ENTITY_TYPES["resource"]
    stored = {"identifier": "i", "name": "n", "scopes": ["a"]}
    shown = read_attributes(resource, stored)
    assert shown == stored
    assert shown is not stored


def test_read_attributes_with_the_write_only_values_kept_apart() -> None:
    # The values are sealed elsewhere: which are set is given by name, and only the type's write-only names count.
    provider = ENTITY_TYPES["provider"]
    public = {"identifier": "i", "name": "n", "client_id": "id"}
    assert read_attributes(provider, public, {"client_secret"}) == {**public, "client_secret_set": True}
    assert read_attributes(provider, public, set()) == public
    assert read_attributes(provider, public, {"client_id", "other"}) == public


def test_no_type_has_more_than_one_write_only_attribute() -> None:
    # A value sealed before the names of its keys were stored beside it is read as "every write-only attribute of
    # its type is set" (``zonecat.engine.views.write_only_set``), which is exact only while this holds.
    assert all(len(entity_type.write_only) <= 1 for entity_type in ENTITY_TYPES.values())
