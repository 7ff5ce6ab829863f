"""The invariant checker: silent on everything the service does, loud on each kind of corruption."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.helpers import create_package, delete_and_wait
from zonecat.clock import now_ms
from zonecat.engine.invariants import check
from zonecat.store.schema import entities, entity_uses, installs, tasks, zones

INPUTS = {"client_id": "c", "client_secret": "s"}


def violations(api: Api) -> list[str]:
    with api.db.read() as conn:
        return [str(v) for v in check(conn, now_ms())]


def failing_manifest() -> dict[str, object]:
    return {
        "kind": "custom",
        "name": "Half Built",
        "entities": {
            "ok": {"type": "secret", "bindings": '{"identifier": "half-ok", "name": "ok"}'},
            "bad": {"type": "secret", "bindings": '{"identifier": "half-bad", "name": entities.ok.outputs.nope}'},
        },
    }


def test_a_busy_zone_has_no_violation(api: Api) -> None:
    zone = api.new_zone()
    provider = api.post(f"/zones/{zone}/providers", json={"identifier": "https://github.com", "name": "GitHub"})
    assert provider.status_code == 201
    calendar = api.install(zone, "google-calendar-api", INPUTS)
    drive = api.install(zone, "google-drive-api", INPUTS)
    github = api.install(zone, "github-api", INPUTS)
    failed = api.install(zone, create_package(api, zone, failing_manifest())["id"])
    assert [t["status"] for t in (calendar, drive, github, failed)] == ["completed"] * 3 + ["failed"]
    assert violations(api) == []
    delete_and_wait(api, zone, calendar["install_id"])
    assert violations(api) == []
    for task in (drive, github, failed):
        delete_and_wait(api, zone, task["install_id"])
    assert violations(api) == []


def test_each_corruption_is_reported(api: Api) -> None:
    zone = api.new_zone()
    calendar = api.install(zone, "google-calendar-api", INPUTS)
    install_id = calendar["install_id"]
    now = now_ms()
    with api.db.write() as conn:
        # an orphan: a managed entity nobody uses
        conn.execute(
            entities.insert().values(
                id="ent_orphan0000000000000000",
                organization_id="default",
                zone_id=zone,
                type="secret",
                identifier="orphan",
                slug="orphan",
                attributes={},
                secret_attributes={},
                managed=True,
                created_by_install_id=None,
                created_by_task_id=None,
                created_at_ms=now,
                updated_at_ms=now,
            )
        )
        # a use recorded as adopted although its entity is managed
        conn.execute(
            entity_uses.update()
            .where(entity_uses.c.install_id == install_id, entity_uses.c.local_name == "calendar")
            .values(role="adopted")
        )
        # an install marked deleted while it still uses entities and its last task is a completed create
        conn.execute(installs.update().where(installs.c.id == install_id).values(status="deleted"))
        # a task left running with an expired lease
        conn.execute(
            tasks.update()
            .where(tasks.c.id == calendar["id"])
            .values(status="running", locked_by="ghost", locked_until_ms=None)  # no worker can claim it back
        )
    rules = {v.split(":")[0] for v in violations(api)}
    assert {"orphan", "role", "leftover", "status", "lease"} <= rules
    with api.db.read() as conn:
        assert [v for v in check(conn, now_ms(), zone_id="zon_elsewhere0000000000")] == []


def test_what_a_zone_that_is_gone_left_behind_is_reported(api: Api) -> None:
    zone = api.new_zone()
    package = create_package(api, zone, failing_manifest(), release=False)
    assert api.install(zone, "google-calendar-api", INPUTS)["status"] == "completed"
    with api.db.write() as conn:
        conn.execute(zones.delete().where(zones.c.id == zone))  # as a zone deleted under a racing write could be
    found = sorted(str(v) for v in check_zone_gone(api))
    tables = ["entities", "entity_uses", "installs", "packages", "tasks"]
    assert [v.split(": ")[1] for v in found] == [zone] * len(tables)
    assert sorted(v.split(" row(s)")[0].split()[-1] for v in found) == tables, found
    assert package["id"]  # the zone's own package is among them


def check_zone_gone(api: Api) -> list[object]:
    with api.db.read() as conn:
        return [v for v in check(conn, now_ms()) if v.rule == "zone-gone"]
