"""Install inputs at the edges: their size in bytes as sent, and integers bindings cannot read."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.api.helpers import assert_error, create_package, simple_manifest

LIMIT = 64 * 1024  # ZONECAT_MAX_INPUTS_BYTES's default


def request(api: Api, zone: str, **extra: Any) -> Any:
    inputs = {"client_id": "c", "client_secret": "s", **extra}
    return api.post(f"/zones/{zone}/installs", json={"package_id": "linear-api", "inputs": inputs})


def test_the_size_limit_counts_utf8_bytes_not_escapes(api: Api) -> None:
    zone = api.new_zone()
    # 3 bytes each in UTF-8, 6 each as json.dumps escapes them by default.
    fits = request(api, zone, note="€" * ((LIMIT - 100) // 3))
    assert fits.status_code == 202, fits.text
    assert api.wait_task(zone, fits.json()["id"])["status"] == "completed"
    over = request(api, zone, note="€" * (LIMIT // 3 + 10))
    assert_error(over, 400, "bad_request")
    assert f"larger than {LIMIT} bytes" in over.json()["message"]


def test_integers_bindings_cannot_read_are_refused_with_the_request(api: Api) -> None:
    zone = api.new_zone()
    for value in (2**64, -(2**63) - 1):
        response = request(api, zone, extra={"deep": [1, value]})
        body = assert_error(response, 400, "validation_error")
        assert [d["field"] for d in body["details"]] == ["inputs.extra.deep[1]"]
        assert "integer out of range" in body["details"][0]["message"]
    for value in (2**64 - 1, -(2**63)):  # CEL's uint and int at their ends
        accepted = request(api, zone, extra={"deep": [1, value]})
        assert accepted.status_code == 202, accepted.text
        assert api.wait_task(zone, accepted.json()["id"])["status"] == "completed"


def test_a_kind_s_write_only_input_stays_hidden_when_a_package_re_declares_it(api: Api) -> None:
    zone = api.new_zone()
    manifest = simple_manifest("Redeclared Secret", kind="api-server")
    manifest["inputs"]["schema"]["properties"]["client_secret"] = {"type": "string", "minLength": 1}  # no writeOnly
    package = create_package(api, zone, manifest)
    inputs = {"app_name": "x", "client_id": "a", "client_secret": "TOPSECRET"}
    task = api.install(zone, package["id"], inputs)
    assert task["status"] == "completed", task
    install = api.get(f"/zones/{zone}/installs/{task['install_id']}").json()
    assert install["inputs"] == {"app_name": "x", "client_id": "a"}
    assert "TOPSECRET" not in api.get(f"/zones/{zone}/installs").text
    shown = api.get(f"/zones/{zone}/packages/{package['id']}").json()["input_state"]["effective_schema"]
    assert shown["properties"]["client_secret"]["writeOnly"] is True


def test_an_entity_holding_an_integer_bindings_cannot_read_is_refused(api: Api) -> None:
    zone = api.new_zone()
    secret = {"type": "token", "token": "t"}
    body = {"identifier": "big-number", "name": "Big", "data": secret, "metadata": {"n": [1, 2**64]}}
    refused = api.post(f"/zones/{zone}/secrets", json=body)
    detail = assert_error(refused, 400, "validation_error")["details"]
    assert [d["field"] for d in detail] == ["metadata.n[1]"]
    body["metadata"] = {"n": [1, 2**64 - 1]}
    assert api.post(f"/zones/{zone}/secrets", json=body).status_code == 201
