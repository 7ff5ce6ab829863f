"""HEAD is answered as GET without the body, on every GET endpoint (RFC 9110 §9.3.2): load balancers' health
checks and ``curl -I`` included."""

from __future__ import annotations

from tests.api.conftest import Api

INPUTS = {"client_id": "c", "client_secret": "s"}


def test_head_answers_what_get_answers_without_the_body(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, "linear-api", INPUTS)
    paths = [
        "/healthz",
        "/readyz",
        "/zones",
        f"/zones/{zone}",
        f"/zones/{zone}/installs",
        f"/zones/{zone}/catalog_tasks/{task['id']}?redirect=false",  # a hot route (and a kept poll)
        f"/zones/{zone}/catalog_tasks/{task['id']}/events",
        f"/zones/{zone}/providers",
    ]
    for path in paths:
        got = api.get(path)
        head = api.client.head(path, headers=api.auth)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        assert head.headers["content-length"] == str(len(got.content)), path
        assert head.headers["content-type"] == got.headers["content-type"], path


def test_head_is_refused_as_get_would_be(api: Api) -> None:
    assert api.client.head("/zones").status_code == 401
    zone = api.new_zone()
    missing = api.client.head(f"/zones/{zone}/installs/ins_01m8mm1q15d1sxbbh146jw", headers=api.auth)
    assert (missing.status_code, missing.content) == (404, b"")
