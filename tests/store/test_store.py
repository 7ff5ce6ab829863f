"""One store suite for every database: constraints, guarded writes, the queue, paging."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from zonecat.domain import idempotency, workers
from zonecat.domain.paging import PageRequest
from zonecat.ids import new_id
from zonecat.store import entities as entity_store
from zonecat.store import hot
from zonecat.store import installs as install_store
from zonecat.store import packages as package_store
from zonecat.store import tasks as task_store
from zonecat.store import zones as zone_store
from zonecat.store.database import HEAD_REVISION, PING_AFTER_IDLE_SECONDS, Database
from zonecat.store.schema import installs, tasks
from zonecat.store.secrets import SecretError

ORG = "default"


def zone(db: Database, name: str = "z") -> str:
    zone_id = new_id("zon")
    with db.write() as conn:
        zone_store.insert_zone(
            conn,
            {
                "id": zone_id,
                "organization_id": ORG,
                "name": name,
                "description": None,
                "created_at_ms": 1,
                "updated_at_ms": 1,
            },
        )
    return zone_id


def package_row(zone_key: str, slug: str) -> dict[str, Any]:
    return {
        "id": new_id("pkg"),
        "organization_id": ORG,
        "zone_key": zone_key,
        "scope": "global" if zone_key == "" else "zone",
        "slug": slug,
        "name": slug,
        "kind": "custom",
        "draft_id": new_id("drf"),
        "draft_manifest": {"name": slug, "kind": "custom"},
        "draft_sha": "a" * 64,
        "draft_updated_at_ms": 1,
        "created_at_ms": 1,
        "updated_at_ms": 1,
    }


def install_row(zone_id: str, status: str = "pending") -> dict[str, Any]:
    return {
        "id": new_id("ins"),
        "organization_id": ORG,
        "zone_id": zone_id,
        "package_id": "pkg_x",
        "package_slug": "x",
        "package_version": 1,
        "version_id": "ver_x",
        "status": status,
        "inputs": {},
        "secret_inputs": {},
        "outputs": None,
        "created_at_ms": 1,
        "updated_at_ms": 1,
    }


def task_row(zone_id: str, install_id: str, run_after: int = 0, status: str = "pending") -> dict[str, Any]:
    return {
        "id": new_id("tsk"),
        "organization_id": ORG,
        "zone_id": zone_id,
        "install_id": install_id,
        "operation": "create",
        "status": status,
        "phase": "apply",
        "error_message": None,
        "warnings": [],
        "package_id": "pkg_x",
        "package_slug": "x",
        "package_version": 1,
        "run_after_ms": run_after,
        "locked_by": None,
        "locked_until_ms": None,
        "attempts": 0,
        "event_seq": 0,
        "created_at_ms": 1,
        "updated_at_ms": 1,
    }


def entity_row(zone_id: str, identifier: str, managed: bool = True, entity_type: str = "provider") -> dict[str, Any]:
    return {
        "id": new_id("ent"),
        "organization_id": ORG,
        "zone_id": zone_id,
        "type": entity_type,
        "identifier": identifier,
        "slug": "s",
        "attributes": {"identifier": identifier, "name": "n"},
        "secret_attributes": {},
        "managed": managed,
        "created_by_install_id": None,
        "created_by_task_id": None,
        "created_at_ms": 1,
        "updated_at_ms": 1,
    }


def test_migration_reaches_head(db: Database) -> None:
    from alembic.script import ScriptDirectory

    with db.engine.connect() as conn:
        alembic_head = ScriptDirectory.from_config(db._alembic_config(conn)).get_current_head()
    assert HEAD_REVISION == alembic_head  # the constant serve and the workers check without importing Alembic
    current, head = db.schema_revision()
    assert current == head == HEAD_REVISION
    db.ensure_current()
    db.migrate()  # nothing left to do
    assert db.current_revision() == HEAD_REVISION


def test_zone_names_are_unique_per_organization(db: Database) -> None:
    zone(db, "alpha")
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        zone_store.insert_zone(
            conn,
            {"id": new_id("zon"), "organization_id": ORG, "name": "alpha", "description": None}
            | {"created_at_ms": 1, "updated_at_ms": 1},
        )


def test_package_slug_is_unique_within_its_scope(db: Database) -> None:
    zone_id = zone(db)
    with db.write() as conn:
        package_store.insert_package(conn, package_row("", "shared"))
        package_store.insert_package(conn, package_row(zone_id, "mine"))
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        package_store.insert_package(conn, package_row(zone_id, "mine"))
    with db.read() as conn:
        assert package_store.slug_taken(conn, ORG, zone_id, "shared")
        assert package_store.find_package(conn, ORG, zone_id, "shared") is not None
        assert package_store.find_package(conn, ORG, "zon_other", "mine") is None


def test_a_slug_both_scopes_have_names_the_zones_package(db: Database) -> None:
    # The rules keep a slug to one package; a database where a global package came to share a zone package's slug
    # before they did still answers one, the zone's, whichever row was written first.
    zone_id, other_zone = zone(db), zone(db, "other")
    global_first = package_row("", "shared")
    mine = package_row(zone_id, "shared")
    with db.write() as conn:
        package_store.insert_package(conn, global_first)
        package_store.insert_package(conn, mine)
        assert package_store.zones_with_slug(conn, ORG, "shared") == [zone_id]
        assert package_store.zones_with_slug(conn, ORG, "nobody") == []
    with db.read() as conn:
        for _ in range(3):
            assert package_store.find_package(conn, ORG, zone_id, "shared")["id"] == mine["id"]  # type: ignore[index]
            brief = package_store.find_package_brief(conn, ORG, zone_id, "shared")
            assert brief == {"id": mine["id"], "slug": "shared"}
        assert package_store.find_package(conn, ORG, other_zone, "shared")["id"] == global_first["id"]  # type: ignore[index]
        assert package_store.find_package_brief(conn, ORG, zone_id, global_first["id"]) == {
            "id": global_first["id"],
            "slug": "shared",
        }


def test_writers_that_take_one_slug_go_one_at_a_time(db: Database) -> None:
    # A zone package and a global one check the slug is free, then take it: nothing spans the two scopes but this.
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with db.write() as conn:
            package_store.lock_slug(conn, ORG, "contested")
            held.set()
            time.sleep(0.3)
            order.append("first done")

    holder = threading.Thread(target=first)
    holder.start()
    assert held.wait(10)
    with db.write() as conn:
        package_store.lock_slug(conn, ORG, "contested")
        order.append("second in")
    holder.join()
    assert order == ["first done", "second in"]


def test_version_numbers_are_unique_and_current_skips_archived(db: Database) -> None:
    zone_id = zone(db)
    package = package_row(zone_id, "p")
    with db.write() as conn:
        package_store.insert_package(conn, package)
        for number in (1, 2):
            package_store.insert_version(
                conn,
                {
                    "id": new_id("ver"),
                    "package_id": package["id"],
                    "version": number,
                    "manifest": {},
                    "manifest_sha": str(number) * 64,
                    "owner_type": "customer",
                    "created_at_ms": number,
                    "archived_at_ms": None,
                },
            )
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        package_store.insert_version(
            conn,
            {
                "id": new_id("ver"),
                "package_id": package["id"],
                "version": 2,
                "manifest": {},
                "manifest_sha": "x",
                "owner_type": "customer",
                "created_at_ms": 3,
                "archived_at_ms": None,
            },
        )
    with db.write() as conn:
        second = package_store.find_version(conn, package["id"], 2)
        assert second is not None
        package_store.archive_version(conn, second["id"], 5)
        current = package_store.current_version(conn, package["id"])
        assert current is not None and current["version"] == 1
        assert package_store.next_version_number(conn, package["id"]) == 3


def test_install_moves_are_guarded_by_the_expected_status(db: Database) -> None:
    zone_id = zone(db)
    install = install_row(zone_id)
    with db.write() as conn:
        install_store.insert_install(conn, install)
        assert install_store.move_install(conn, install["id"], ("pending",), "active", 2)
        assert not install_store.move_install(conn, install["id"], ("pending",), "failed", 3)
        row = install_store.install_by_id(conn, install["id"])
    assert row is not None and row["status"] == "active"


def test_one_unfinished_task_per_install(db: Database) -> None:
    zone_id = zone(db)
    install = install_row(zone_id)
    with db.write() as conn:
        install_store.insert_install(conn, install)
        task_store.insert_task(conn, task_row(zone_id, install["id"]))
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        task_store.insert_task(conn, task_row(zone_id, install["id"]))
    with db.write() as conn:  # a finished task does not count
        task_store.insert_task(conn, task_row(zone_id, install["id"], status="completed"))


def test_claim_takes_due_tasks_in_order_and_reclaims_expired_leases(db: Database) -> None:
    zone_id = zone(db)
    first, second = task_row(zone_id, new_id("ins"), run_after=10), task_row(zone_id, new_id("ins"), run_after=20)
    later = task_row(zone_id, new_id("ins"), run_after=10_000)
    with db.write() as conn:
        for row in (later, second, first):
            task_store.insert_task(conn, row)
    with db.write() as conn:
        claimed = task_store.claim(conn, "w1", now=100, lease_ms=50)
    assert claimed is not None and claimed["id"] == first["id"] and claimed["previous_status"] == "pending"
    with db.write() as conn:
        again = task_store.claim(conn, "w2", now=120, lease_ms=50)
        assert again is not None and again["id"] == second["id"]
        assert task_store.claim(conn, "w3", now=130, lease_ms=50) is None  # both leased, the third not due
    with db.write() as conn:
        resumed = task_store.claim(conn, "w3", now=151, lease_ms=50)
    assert resumed is not None and resumed["id"] == first["id"]
    assert resumed["previous_status"] == "running" and resumed["previous_owner"] == "w1"
    assert resumed["attempts"] == 2


@pytest.mark.parametrize("announced", [False, True])
def test_a_claim_resumes_work_whose_lease_ended_before_it_starts_new_work(db: Database, announced: bool) -> None:
    zone_id = zone(db)
    # The pending task was due first, but the other one was begun already and its worker is gone.
    waiting, begun = task_row(zone_id, new_id("ins"), run_after=1), task_row(zone_id, new_id("ins"), run_after=5)
    ended_first = task_row(zone_id, new_id("ins"), run_after=6)
    with db.write() as conn:
        for row in (waiting, begun, ended_first):
            task_store.insert_task(conn, row)
        conn.execute(
            tasks.update()
            .where(tasks.c.id.in_([begun["id"], ended_first["id"]]))
            .values(
                status="running", locked_by="gone", locked_until_ms=sa.case((tasks.c.id == begun["id"], 90), else_=80)
            )
        )

    def claim(worker_id: str) -> str | None:
        if announced:
            with db.write_statement() as conn:
                found = task_store.claim_announced(conn, worker_id, now=100, lease_ms=1_000)
        else:
            with db.write() as conn:
                found = task_store.claim(conn, worker_id, now=100, lease_ms=1_000)
        return found["id"] if found else None

    # Leases in the order they ended, then the pending task.
    assert [claim("w1"), claim("w2"), claim("w3"), claim("w4")] == [ended_first["id"], begun["id"], waiting["id"], None]


def test_the_queue_indexes_are_the_ones_the_schema_declares(db: Database) -> None:
    declared = {index.name for index in tasks.indexes}
    assert {"ix_tasks_pending", "ix_tasks_leased"} <= declared and "ix_tasks_due" not in declared
    with db.engine.connect() as conn:
        migrated = {index["name"] for index in sa.inspect(conn).get_indexes("tasks")}
        assert declared <= migrated and "ix_tasks_due" not in migrated, "the migrations make the declared indexes"
        if db.is_sqlite:
            definitions = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").all())
            assert "WHERE status = 'pending'" in definitions["ix_tasks_pending"]
            assert "WHERE status = 'running'" in definitions["ix_tasks_leased"]
            # The claim and the next-due read, as compiled, search the queue indexes (a bound ``status = ?`` would
            # not: SQLite uses a partial index only for a query that repeats its condition).
            for statement, params in ((task_store._CANDIDATE, {"now": 5}), (task_store._NEXT_DUE, {})):
                compiled = statement._compile(conn.dialect, params)
                plan = conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + compiled.sql, statement._params(compiled, params)
                ).all()
                used = " ".join(str(row) for row in plan)
                assert "ix_tasks_pending" in used and "ix_tasks_leased" in used, plan


def test_next_due_is_the_earliest_pending_run_or_lease_expiry(db: Database) -> None:
    zone_id = zone(db)
    with db.read_statement() as conn:
        assert task_store.next_due_ms(conn) is None
    with db.write() as conn:
        task_store.insert_task(conn, task_row(zone_id, new_id("ins"), run_after=500))
        task_store.insert_task(conn, task_row(zone_id, new_id("ins"), run_after=5, status="completed"))
        task_store.insert_task(conn, task_row(zone_id, new_id("ins"), run_after=300))
    with db.read_statement() as conn:
        assert task_store.next_due_ms(conn) == 300
    with db.write() as conn:
        assert task_store.claim(conn, "w1", now=400, lease_ms=50) is not None  # the 300 one, leased until 450
    with db.read_statement() as conn:
        assert task_store.next_due_ms(conn) == 450


def test_lease_guard_refuses_a_worker_that_lost_its_task(db: Database) -> None:
    zone_id = zone(db)
    row = task_row(zone_id, new_id("ins"))
    with db.write() as conn:
        task_store.insert_task(conn, row)
        task_store.claim(conn, "w1", now=1, lease_ms=10)
        task_store.claim(conn, "w2", now=20, lease_ms=10)  # w1's lease expired
        assert not task_store.renew_lease(conn, row["id"], "w1", 21, 10)
        assert not task_store.update_owned(conn, row["id"], "w1", 21, status="completed")
        assert task_store.renew_lease(conn, row["id"], "w2", 21, 10)
        assert task_store.release_lease(conn, row["id"], "w2")
        released = task_store.claim(conn, "w3", now=22, lease_ms=10)
    assert released is not None and released["locked_by"] == "w3"


def test_an_announced_claim_writes_its_running_event_in_the_same_step(db: Database) -> None:
    zone_id = zone(db)
    first, second = task_row(zone_id, new_id("ins"), run_after=1), task_row(zone_id, new_id("ins"), run_after=2)
    with db.write() as conn:
        task_store.insert_task(conn, first, {"kind": "status", "status": "pending", "message": "create requested"})
        task_store.insert_task(conn, second)
    claims = []
    for worker_id, now, lease in (("w1", 10, 50), ("w2", 11, 1000), ("w3", 100, 50), ("w4", 101, 50), ("w5", 102, 50)):
        if worker_id == "w4":
            with db.write() as conn:
                assert task_store.release_lease(conn, first["id"], "w3")
        with db.write_statement() as conn:
            claims.append(task_store.claim_announced(conn, worker_id, now, lease_ms=lease))
    one, two, expired, released, nothing = claims
    assert nothing is None
    assert one is not None and two is not None and expired is not None and released is not None
    assert [c["id"] for c in (one, two, expired, released)] == [first["id"], second["id"], first["id"], first["id"]]
    assert (one["previous_status"], one["previous_owner"], one["previous_released"]) == ("pending", None, False)
    assert (expired["previous_status"], expired["previous_owner"], expired["previous_released"]) == (
        "running",
        "w1",
        False,
    )
    assert (released["previous_owner"], released["previous_released"]) == ("w3", True)
    assert (released["status"], released["locked_by"], released["locked_until_ms"]) == ("running", "w4", 151)
    assert [c["attempts"] for c in (one, expired, released)] == [1, 2, 3]
    with db.read() as conn:
        events = task_store.list_events(conn, first["id"], 0, 10)
        assert task_store.list_events(conn, second["id"], 0, 10)[0]["message"] == "claimed by w2"
        # Every column of the claimed row is the task's own (the statement matches its columns by position).
        stored = task_store.task_by_id(conn, first["id"])
    assert {k: v for k, v in released.items() if not k.startswith("previous_") and k != "install"} == stored
    assert released["install"] is None  # these tasks have no install row
    # Seq 1 was the pending event; each claim reserved the next number for its running event.
    assert [(e["seq"], e["kind"], e["status"], e["created_at_ms"]) for e in events] == [
        (1, "status", "pending", first["created_at_ms"]),
        (2, "status", "running", 10),
        (3, "status", "running", 100),
        (4, "status", "running", 101),
    ]
    assert [e["message"] for e in events[1:]] == [
        workers.claim_message("w1", "pending", None, False, 1),
        workers.claim_message("w3", "running", "w1", False, 2),
        workers.claim_message("w4", "running", "w3", True, 3),
    ]
    assert events[2]["message"] == "resumed by w3 after w1 let its lease expire (attempt 2)"
    assert events[3]["message"] == "resumed by w4 after w3 released it (attempt 3)"
    assert released["event_seq"] == 4


def test_events_are_numbered_in_order(db: Database) -> None:
    zone_id = zone(db)
    row = task_row(zone_id, new_id("ins"))
    with db.write() as conn:
        task_store.insert_task(conn, row)
        seqs = [task_store.append_event(conn, row["id"], i, "status", status="running") for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    with db.read() as conn:
        assert [e["seq"] for e in task_store.list_events(conn, row["id"], 2, 10)] == [3, 4, 5]


def test_natural_key_is_unique_and_uses_track_users(db: Database) -> None:
    zone_id = zone(db)
    provider = entity_row(zone_id, "https://accounts.google.com")
    with db.write() as conn:
        entity_store.insert_entity(conn, provider)
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        entity_store.insert_entity(conn, entity_row(zone_id, "https://accounts.google.com"))
    other_zone = zone(db, "other")
    with db.write() as conn:  # the same identifier in another zone or of another type is fine
        entity_store.insert_entity(conn, entity_row(other_zone, "https://accounts.google.com"))
        entity_store.insert_entity(conn, entity_row(zone_id, "https://accounts.google.com", entity_type="resource"))
    installs = [new_id("ins"), new_id("ins")]
    with db.write() as conn:
        for position, install_id in enumerate(installs):
            entity_store.insert_use(
                conn,
                {
                    "install_id": install_id,
                    "local_name": "google",
                    "entity_id": provider["id"],
                    "zone_id": zone_id,
                    "role": "created" if position == 0 else "shared",
                    "task_id": "tsk_x",
                    "position": 0,
                    "created_at_ms": 1,
                },
            )
        assert entity_store.staying_users(conn, installs[0]) == {provider["id"]: [installs[1]]}
        entity_store.delete_use(conn, installs[1], "google")
        assert entity_store.staying_users(conn, installs[0]) == {}
        found = entity_store.by_natural_key(conn, zone_id, "provider", "https://accounts.google.com")
        assert found is not None and found["id"] == provider["id"]


def test_a_used_entity_cannot_be_deleted_underneath_its_install(db: Database) -> None:
    zone_id = zone(db)
    provider = entity_row(zone_id, "https://github.com")
    with db.write() as conn:
        entity_store.insert_entity(conn, provider)
        entity_store.insert_use(
            conn,
            {
                "install_id": "ins_a",
                "local_name": "gh",
                "entity_id": provider["id"],
                "zone_id": zone_id,
                "role": "created",
                "task_id": "tsk_x",
                "position": 0,
                "created_at_ms": 1,
            },
        )
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        entity_store.delete_entity(conn, provider["id"])


def test_idempotency_records_expire(db: Database) -> None:
    record = {
        "organization_id": ORG,
        "key": "k",
        "method": "POST",
        "path": "/zones/z/installs",
        "body_sha": "b",
        "task_id": "tsk_1",
        "created_at_ms": 100,
    }
    with db.write() as conn:
        install_store.remember_idempotency(conn, record)
        assert install_store.find_idempotency(conn, ORG, "k", "POST", "/zones/z/installs", since=50) is not None
        assert install_store.find_idempotency(conn, ORG, "k", "POST", "/zones/z/installs", since=150) is None
        assert install_store.find_idempotency(conn, ORG, "k", "DELETE", "/zones/z/installs", since=50) is None
    # A live record is never replaced: a second request that missed it (a race) fails on the key instead of
    # erasing the first one's, and is then answered with the first one's task.
    with pytest.raises(sa.exc.IntegrityError), db.write() as conn:
        install_store.remember_idempotency(conn, record | {"task_id": "tsk_2", "created_at_ms": 200})
    expired = 100 + idempotency.WINDOW_MS + 1
    with db.write() as conn:
        install_store.remember_idempotency(conn, record | {"task_id": "tsk_2", "created_at_ms": expired})
        found = install_store.find_idempotency(conn, ORG, "k", "POST", "/zones/z/installs", since=expired - 10)
    assert found is not None and found["task_id"] == "tsk_2"


def _walk(db: Database, zone_ids: set[str], limit: int) -> None:
    seen_forward: list[str] = []
    after = None
    cursor_request = PageRequest(limit=limit)
    while True:
        with db.read() as conn:
            page = zone_store.list_zones(conn, ORG, None, cursor_request)
        seen_forward += [row["id"] for row in page.items]
        if page.after_cursor is None:
            last_before = page.before_cursor
            break
        after = page.after_cursor
        cursor_request = PageRequest.parse(limit, after, None)
    assert seen_forward == sorted(zone_ids, reverse=True)
    # Backward from the last page: every item again, exactly once.
    seen_backward = list(reversed([row["id"] for row in page.items]))
    before = last_before
    while before is not None:
        with db.read() as conn:
            page = zone_store.list_zones(conn, ORG, None, PageRequest.parse(limit, None, before))
        seen_backward += list(reversed([row["id"] for row in page.items]))
        before = page.before_cursor
    assert seen_backward == sorted(zone_ids)


@pytest.mark.parametrize("limit", [1, 7, 20, 100])
def test_paging_visits_every_item_once_each_way(db: Database, limit: int) -> None:
    zone_ids = {zone(db, f"zone-{i}") for i in range(23)}
    _walk(db, zone_ids, limit)


def test_paging_past_the_end_can_turn_back(db: Database) -> None:
    ids = [zone(db, f"zone-{i}") for i in range(3)]
    with db.read() as conn:
        first = zone_store.list_zones(conn, ORG, None, PageRequest(limit=3))
        assert first.after_cursor is None and first.before_cursor is None
        page = zone_store.list_zones(conn, ORG, None, PageRequest.parse(3, None, None, with_total=True))
        assert page.total_count == 3
        oldest = PageRequest.parse(1, None, None)
        newest_first = zone_store.list_zones(conn, ORG, None, oldest)
    assert newest_first.items[0]["id"] == max(ids)


def test_deleting_a_zone_removes_everything_in_it(db: Database) -> None:
    zone_id, kept_zone = zone(db, "doomed"), zone(db, "kept")
    install = install_row(zone_id, status="deleted")
    task = task_row(zone_id, install["id"], status="completed")
    with db.write() as conn:
        package_store.insert_package(conn, package_row(zone_id, "local"))
        install_store.insert_install(conn, install)
        task_store.insert_task(conn, task)
        task_store.append_event(conn, task["id"], 1, "status", status="completed")
        entity_store.insert_entity(conn, entity_row(zone_id, "https://unmanaged.example", managed=False))
        entity_store.insert_entity(conn, entity_row(kept_zone, "https://unmanaged.example", managed=False))
        zone_store.delete_zone(conn, zone_id)
    with db.read() as conn:
        assert zone_store.get_zone(conn, ORG, zone_id) is None
        assert not package_store.slug_taken(conn, ORG, zone_id, "local")
        assert install_store.install_by_id(conn, install["id"]) is None
        assert task_store.task_by_id(conn, task["id"]) is None
        assert task_store.list_events(conn, task["id"], 0, 10) == []
        assert entity_store.by_natural_key(conn, zone_id, "provider", "https://unmanaged.example") is None
        assert entity_store.by_natural_key(conn, kept_zone, "provider", "https://unmanaged.example") is not None


def test_insert_if_absent_reports_whether_it_inserted(db: Database) -> None:
    zone_id = zone(db)
    first = entity_row(zone_id, "https://linear.app")
    with db.write() as conn:
        assert entity_store.insert_entity_if_absent(conn, first)
        assert not entity_store.insert_entity_if_absent(conn, entity_row(zone_id, "https://linear.app"))
        found = entity_store.by_natural_key(conn, zone_id, "provider", "https://linear.app")
    assert found is not None and found["id"] == first["id"]


def test_an_entity_and_its_use_go_in_together_or_not_at_all(db: Database) -> None:
    zone_id = zone(db)
    first = entity_row(zone_id, "https://linear.app")
    use = {
        "install_id": new_id("ins"),
        "local_name": "linear",
        "zone_id": zone_id,
        "task_id": "tsk_x",
        "position": 3,
        "created_at_ms": 7,
    }
    with db.write() as conn:
        assert entity_store.insert_entity_with_use(conn, first, use)
        # The natural key is taken: neither the entity nor a use of it is written.
        assert not entity_store.insert_entity_with_use(
            conn, entity_row(zone_id, "https://linear.app"), {**use, "local_name": "again"}
        )
        uses = entity_store.uses_of_install(conn, use["install_id"])
        stored = entity_store.get_entity(conn, zone_id, first["id"])
    assert uses == [{**use, "entity_id": first["id"], "role": "created"}]
    assert stored == first
    with pytest.raises(TypeError), db.write() as conn:
        entity_store.insert_entity_with_use(conn, entity_row(zone_id, "x"), {"install_id": "ins_1"})


def test_concurrent_claims_never_hand_one_task_to_two_workers(db: Database) -> None:
    """Each claimer keeps its transaction open a moment, so on PostgreSQL the others must skip the locked rows."""
    zone_id = zone(db)
    rows = [task_row(zone_id, new_id("ins"), run_after=i) for i in range(24)]
    for row in rows[::2]:  # half of them running on a lease that ran out: whoever claims them takes over
        row.update(status="running", locked_by="dead", locked_until_ms=500, attempts=1)
    with db.write() as conn:
        for row in rows:
            task_store.insert_task(conn, row)
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)

    def claimer(worker_id: str) -> None:
        mine = claimed.setdefault(worker_id, [])
        start.wait()
        while True:
            with db.write() as conn:
                task = task_store.claim(conn, worker_id, now=1_000, lease_ms=60_000)
                if task is None:
                    return
                time.sleep(0.005)
            mine.append(task["id"])

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [task_id for ids in claimed.values() for task_id in ids]
    assert sorted(everything) == sorted(row["id"] for row in rows)  # every task once, none twice
    with db.read() as conn:
        owners = {task_store.task_by_id(conn, row["id"])["locked_by"] for row in rows}  # type: ignore[index]
    assert owners <= set(claimed)


def _use(install_id: str, entity_id: str, zone_id: str, role: str) -> dict[str, Any]:
    return {
        "install_id": install_id,
        "local_name": "provider",
        "entity_id": entity_id,
        "zone_id": zone_id,
        "role": role,
        "task_id": "tsk_x",
        "position": 0,
        "created_at_ms": 1,
    }


def _release_last_use(
    db: Database, zone_id: str, entity_id: str, install_id: str, locked: threading.Event | None = None
) -> str:
    """What the provisioner does to release a use: lock the entity, drop the use, delete it if nobody is left.
    With ``locked``: signal it once the entity is locked, then keep the lock a moment."""
    with db.write() as conn:
        entity = entity_store.get_entity(conn, zone_id, entity_id, lock=True)
        assert entity is not None
        if locked is not None:
            locked.set()
            time.sleep(0.3)  # a sharer arriving now must wait for this transaction
        entity_store.delete_use(conn, install_id, "provider")
        if entity_store.remaining_uses(conn, entity_id):
            return "kept"
        entity_store.delete_entity(conn, entity_id)
        return "deleted"


def _share_or_create(
    db: Database, row: dict[str, Any], install_id: str, holding: threading.Event | None = None
) -> tuple[str, str]:
    """What the provisioner does to use an entity: insert it unless its natural key exists, else lock and share.
    With ``holding``: signal it once the entity is locked, then keep the lock a moment before using it."""
    with db.write() as conn:
        for _ in range(3):
            if entity_store.insert_entity_if_absent(conn, row):
                entity_id, role = row["id"], "created"
                break
            found = entity_store.by_natural_key(conn, row["zone_id"], row["type"], row["identifier"], lock=True)
            if found is not None:
                entity_id, role = found["id"], "shared"
                break
        else:
            raise AssertionError("the natural key kept changing")
        if holding is not None:
            holding.set()
            time.sleep(0.3)
        entity_store.insert_use(conn, _use(install_id, entity_id, row["zone_id"], role))
    return entity_id, role


def test_a_share_arriving_during_the_last_release_creates_the_entity_again(db: Database) -> None:
    zone_id = zone(db)
    old = entity_row(zone_id, "https://slack.com")
    with db.write() as conn:
        entity_store.insert_entity(conn, old)
        entity_store.insert_use(conn, _use("ins_a", old["id"], zone_id, "created"))
    locked = threading.Event()
    outcome: list[str] = []
    releaser = threading.Thread(
        target=lambda: outcome.append(_release_last_use(db, zone_id, old["id"], "ins_a", locked))
    )
    releaser.start()
    assert locked.wait(10)
    new = entity_row(zone_id, "https://slack.com")
    entity_id, role = _share_or_create(db, new, "ins_b")
    releaser.join(timeout=30)
    assert outcome == ["deleted"]
    assert (entity_id, role) == (new["id"], "created")
    with db.read() as conn:
        assert entity_store.get_entity(conn, zone_id, old["id"]) is None
        assert [u["install_id"] for u in entity_store.uses_of_entity(conn, new["id"])] == ["ins_b"]


def test_a_release_during_a_share_keeps_the_entity_for_its_new_user(db: Database) -> None:
    zone_id = zone(db)
    entity = entity_row(zone_id, "https://notion.so")
    with db.write() as conn:
        entity_store.insert_entity(conn, entity)
        entity_store.insert_use(conn, _use("ins_a", entity["id"], zone_id, "created"))
    shared: list[tuple[str, str]] = []
    holding = threading.Event()
    sharer = threading.Thread(
        target=lambda: shared.append(_share_or_create(db, entity_row(zone_id, "https://notion.so"), "ins_b", holding))
    )
    sharer.start()
    assert holding.wait(10)  # the sharer holds the entity's row lock (PostgreSQL) or the write lock (SQLite) now
    outcome = _release_last_use(db, zone_id, entity["id"], "ins_a")
    sharer.join(timeout=30)
    assert shared == [(entity["id"], "shared")]
    assert outcome == "kept"
    with db.read() as conn:
        assert entity_store.get_entity(conn, zone_id, entity["id"]) is not None
        assert [u["install_id"] for u in entity_store.uses_of_entity(conn, entity["id"])] == ["ins_b"]


def token_row(**changes: Any) -> dict[str, Any]:
    return {
        "id": new_id("tok"),
        "organization_id": ORG,
        "name": "t",
        "token_hash": "f" * 64,
        "zones": None,
        "read_only": False,
        "admin": False,
        "created_at_ms": 1,
        "revoked_at_ms": None,
        **changes,
    }


def test_hot_reads_return_what_their_sqlalchemy_twins_return(db: Database) -> None:
    zone_id = zone(db)
    row = task_row(zone_id, new_id("ins"))
    row["warnings"] = ["kept entity x: adopted"]
    token = token_row(zones=[zone_id], read_only=True)
    stranger = token_row(organization_id="another-org", token_hash="e" * 64)
    with db.write() as conn:
        zone_store.insert_token(conn, token)
        zone_store.insert_token(conn, stranger)
        task_store.insert_task(conn, row)
        task_store.append_event(conn, row["id"], 2, "status", status="running")
        for name in ("b", "a"):
            task_store.append_event(
                conn,
                row["id"],
                3,
                "step_done",
                local_name=name,
                entity_type="secret",
                action="created",
                href=f"/{name}",
            )
    with db.read() as conn:
        expected = (
            zone_store.token_by_hash(conn, token["token_hash"]),
            zone_store.get_zone(conn, ORG, zone_id),
            task_store.get_task(conn, zone_id, row["id"]),
            task_store.step_outcomes(conn, row["id"]),
        )
    readers = [db.direct.pooled]
    if db.direct.loop_capable:
        readers.append(db.direct.on_loop)
    for snapshot in readers:
        with snapshot() as reader:
            poll = hot.token_and_task(reader, token["token_hash"], zone_id, row["id"])
            assert poll.task is not None and poll.key is not None
            found = (
                hot.token_by_hash(reader, token["token_hash"]),
                hot.get_zone(reader, ORG, zone_id),
                poll.task,
                hot.step_outcomes(reader, row["id"], poll.task["event_seq"]),
            )
            assert poll.token == found[0]
            assert hot.token_by_hash(reader, "0" * 64) is None
            assert hot.token_and_task(reader, "0" * 64, zone_id, row["id"]) == (None, None, None)
            assert hot.token_and_task(reader, token["token_hash"], zone_id, "tsk_missing") == (found[0], None, None)
            # A task is read only for a token of its zone's organization, and only in its own zone.
            foreign = hot.token_and_task(reader, stranger["token_hash"], zone_id, row["id"])
            assert foreign.token is not None and foreign.token["id"] == stranger["id"] and foreign.task is None
            assert hot.token_and_task(reader, token["token_hash"], new_id("zon"), row["id"]).task is None
            assert hot.step_outcomes(reader, "tsk_missing", 10) == []
        assert found == expected
        assert [link["local_name"] for link in found[3]] == ["b", "a"]


def test_a_task_rows_key_follows_every_stored_value_and_its_events_their_count(db: Database) -> None:
    zone_id = zone(db)
    row = task_row(zone_id, new_id("ins"))
    token = token_row()
    with db.write() as conn:
        zone_store.insert_token(conn, token)
        task_store.insert_task(conn, row)
        seq = task_store.append_event(
            conn, row["id"], 2, "step_done", local_name="a", entity_type="secret", action="created", href="/a"
        )

    def read() -> tuple[Any, ...]:
        with db.direct.pooled(snapshot=False) as reader:
            poll = hot.token_and_task(reader, token["token_hash"], zone_id, row["id"])
            assert poll.key is not None
            hash(poll.key)
            return poll.key

    first = read()
    assert read() == first
    # A value no event accompanies (warnings kept by a delete's worker, same millisecond) still changes the key.
    with db.write() as conn:
        conn.execute(tasks.update().where(tasks.c.id == row["id"]).values(warnings=[{"code": "kept"}]))
    second = read()
    assert second != first
    with db.write() as conn:
        task_store.append_event(
            conn, row["id"], 3, "step_done", local_name="b", entity_type="secret", action="created", href="/b"
        )
    assert read() != second
    with db.direct.pooled(snapshot=False) as reader:
        # Read with the count an earlier row read had, the later event is not among them.
        assert [e["local_name"] for e in hot.step_outcomes(reader, row["id"], seq)] == ["a"]
        assert [e["local_name"] for e in hot.step_outcomes(reader, row["id"], seq + 1)] == ["a", "b"]


def test_direct_reads_see_one_snapshot(db: Database) -> None:
    zone_id = zone(db)
    with db.direct.pooled() as reader:
        before = hot.get_zone(reader, ORG, zone_id)
        # A write committed while the snapshot is open is not seen by it (a thread: SQLite's writer lock is
        # per connection, and this thread's reader holds a connection of its own).
        renamed = threading.Thread(target=_rename_zone, args=(db, zone_id))
        renamed.start()
        renamed.join()
        assert hot.get_zone(reader, ORG, zone_id) == before
    with db.direct.pooled() as reader:
        after = hot.get_zone(reader, ORG, zone_id)
        assert after is not None and after["name"] == "renamed"


def test_reads_without_a_snapshot_each_see_their_own_moment(db: Database) -> None:
    zone_id = zone(db)
    readers = [db.direct.pooled]
    if db.direct.loop_capable:
        readers.append(db.direct.on_loop)
    for index, reader_of in enumerate(readers):
        with reader_of(snapshot=False) as reader:
            before = hot.get_zone(reader, ORG, zone_id)
            assert before is not None and before["name"] != f"renamed {index}"
            renamed = threading.Thread(target=_rename_zone, args=(db, zone_id, f"renamed {index}"))
            renamed.start()
            renamed.join()
            after = hot.get_zone(reader, ORG, zone_id)
            assert after is not None and after["name"] == f"renamed {index}"


def _rename_zone(db: Database, zone_id: str, name: str = "renamed") -> None:
    with db.write() as conn:
        conn.execute(sa.text("UPDATE zones SET name = :name WHERE id = :id"), {"id": zone_id, "name": name})


def test_a_one_statement_direct_read_and_a_failed_one_leave_the_connection_reusable(db: Database) -> None:
    zone_id = zone(db)
    with db.direct.pooled(snapshot=False) as reader:
        found = hot.get_zone(reader, ORG, zone_id)
        assert found is not None and found["id"] == zone_id
    with pytest.raises(sa.exc.DBAPIError), db.direct.pooled() as reader:
        reader.one("SELECT no_such_column FROM zones WHERE id = ?", [zone_id])
    # The failed snapshot was ended; the pool's connections still read (and write) normally.
    for _ in range(3):
        with db.direct.pooled() as reader:
            assert hot.get_zone(reader, ORG, zone_id) is not None
        with db.direct.pooled(snapshot=False) as reader:
            assert hot.get_zone(reader, ORG, zone_id) is not None
    # No connection went back to the pool in autocommit: a failed write transaction still leaves nothing behind.
    for _ in range(3):
        with pytest.raises(RuntimeError), db.write() as conn:
            conn.execute(sa.text("UPDATE zones SET name = 'half-done' WHERE id = :id"), {"id": zone_id})
            raise RuntimeError("abandon the transaction")
        with db.read() as conn:
            assert zone_store.get_zone(conn, ORG, zone_id)["name"] != "half-done"  # type: ignore[index]
    _rename_zone(db, zone_id)
    with db.read() as conn:
        assert zone_store.get_zone(conn, ORG, zone_id)["name"] == "renamed"  # type: ignore[index]


def test_an_idle_connection_that_died_is_replaced_at_checkout(db: Database) -> None:
    cut: set[int] = set()
    if not db.is_sqlite:  # a SQLite connection has no other side to cut: there the reads below just work
        with db.read() as conn, db.direct.pooled() as reader:  # two pooled connections at least
            assert reader.one("SELECT 1 AS one", []) == {"one": 1}
        # Every backend of the pool's, cut from a connection outside the pool.
        url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url, autocommit=True) as outside:
            rows = outside.execute(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        cut = {int(pid) for pid, _ in rows}
        assert len(cut) >= 2
    # Recently used connections are handed out without a ping; one idle for longer is pinged first, and a dead one
    # is replaced instead of failing the transaction it was checked out for.
    time.sleep(PING_AFTER_IDLE_SECONDS + 0.1)
    with db.read() as conn:
        assert zone_store.get_zone(conn, ORG, "zon_missing") is None
        if cut:
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() not in cut
    with db.direct.pooled() as reader:
        assert hot.get_zone(reader, ORG, "zon_missing") is None


def test_single_statement_connections_go_back_to_the_pool_transactional(db: Database) -> None:
    zone_id = zone(db)
    for _ in range(3):
        with db.read_statement() as conn:
            assert zone_store.get_zone(conn, ORG, zone_id) is not None
        with db.write_statement() as conn:
            conn.execute(sa.text("UPDATE zones SET name = 'one-statement' WHERE id = :id"), {"id": zone_id})
    for _ in range(3):
        with pytest.raises(RuntimeError), db.write() as conn:
            conn.execute(sa.text("UPDATE zones SET name = 'half-done' WHERE id = :id"), {"id": zone_id})
            raise RuntimeError("abandon the transaction")
    with db.read() as conn:
        assert zone_store.get_zone(conn, ORG, zone_id)["name"] == "one-statement"  # type: ignore[index]


def test_a_journal_numbers_its_events_after_the_counter_and_writes_nothing_once_the_lease_is_lost(
    db: Database,
) -> None:
    zone_id = zone(db)
    install = install_row(zone_id)
    task = task_row(zone_id, install["id"])
    with db.write() as conn:
        install_store.insert_install(conn, install)
        task_store.insert_task(conn, task, {"kind": "status", "status": "pending"})  # event 1
        assert task_store.claim_announced(conn, "w1", now=100, lease_ms=50) is not None  # event 2
    step = {"local_name": "e0", "entity_type": "secret"}
    # A message with what a text array or JSON must escape: quotes, backslashes, braces, commas, NULL-like words,
    # a newline and characters beyond ASCII.
    message = 'ok "quoted" \\ {brace}, NULL null [1] \u00e9 \u2713\nnext line'
    done = {**step, "kind": "step_done", "action": "created", "entity_id": "ent_1", "href": "/e/1", "message": message}
    with db.write() as conn:
        assert task_store.journal(conn, task["id"], "w1", 200, 50, [{**step, "kind": "step_started"}, done])
        assert not task_store.journal(conn, task["id"], "w2", 210, 50, [{"kind": "status", "status": "x"}])
    with db.write() as conn:
        end = {"status": "completed", "locked_until_ms": None, "updated_at_ms": 300}
        assert task_store.journal(conn, task["id"], "w1", 300, 50, [{"kind": "status", "status": "completed"}], end)
        assert not task_store.journal(conn, task["id"], "w1", 310, 50, [{"kind": "status", "status": "again"}])
    with db.read() as conn:
        events = task_store.list_events(conn, task["id"], 0, 10)
        stored = task_store.task_by_id(conn, task["id"])
    assert [(e["seq"], e["kind"], e["status"], e["created_at_ms"]) for e in events] == [
        (1, "status", "pending", task["created_at_ms"]),
        (2, "status", "running", 100),
        (3, "step_started", None, 200),
        (4, "step_done", None, 200),
        (5, "status", "completed", 300),
    ]
    assert {k: events[3][k] for k in done if k != "kind"} == {k: v for k, v in done.items() if k != "kind"}
    assert stored is not None and (stored["event_seq"], stored["status"], stored["locked_until_ms"]) == (
        5,
        "completed",
        None,
    )
    if db.engine.dialect.name == "postgresql":
        # A value too long for its column is refused, as a plain insert refuses it, not cut to fit.
        with pytest.raises(sa.exc.DataError), db.write() as conn:
            task_store.insert_task(conn, task_row(zone_id, install["id"]))  # a second, running task to journal on
            claimed = task_store.claim(conn, "w3", now=400, lease_ms=50)
            assert claimed is not None
            task_store.journal(conn, claimed["id"], "w3", 401, 50, [{"kind": "status", "entity_type": "t" * 65}])


def test_a_claim_that_finds_nothing_tells_when_the_next_task_is_due(db: Database) -> None:
    zone_id = zone(db)
    with db.write_statement() as conn:
        assert task_store.claim_or_next_due(conn, "w0", now=1, lease_ms=10) == (None, None)
    leased, later = task_row(zone_id, new_id("ins"), run_after=0), task_row(zone_id, new_id("ins"), run_after=500)
    with db.write() as conn:
        task_store.insert_task(conn, leased)
        claimed = task_store.claim(conn, "w1", now=1, lease_ms=299)  # leased until 300
        assert claimed is not None and claimed["id"] == leased["id"]
        task_store.insert_task(conn, later)
    with db.write_statement() as conn:
        assert task_store.claim_or_next_due(conn, "w2", now=100, lease_ms=10) == (None, 300)
    with db.write_statement() as conn:
        task, due = task_store.claim_or_next_due(conn, "w2", now=400, lease_ms=1_000)
    assert task is not None and (task["id"], task["locked_by"], due) == (leased["id"], "w2", None)
    assert set(task) >= {"previous_status", "previous_owner", "previous_released"}
    assert not any(key.startswith("next_") for key in task)
    with db.write_statement() as conn:
        assert task_store.claim_or_next_due(conn, "w3", now=450, lease_ms=10) == (None, 500)
        assert task_store.next_due_ms(conn) == 500


def test_a_claim_brings_a_create_tasks_install_with_its_write_only_inputs_sealed(db: Database) -> None:
    zone_id = zone(db)
    install = {**install_row(zone_id), "inputs": {"team": "a"}}
    orphan = task_row(zone_id, new_id("ins"), run_after=1)  # its install is gone (or never was)
    task = task_row(zone_id, install["id"])
    removed = install_row(zone_id, status="deleting")  # one unfinished task per install: another install's delete
    deleting = {**task_row(zone_id, removed["id"], run_after=2), "operation": "delete"}
    sealed = {"enc": "zcs1.not-a-token"}  # as stored; opening it needs the key (the store suite has none)
    with db.write() as conn:
        install_store.insert_install(conn, install)
        install_store.insert_install(conn, removed)
        conn.execute(
            installs.update()
            .where(installs.c.id == install["id"])
            .values(secret_inputs=sa.type_coerce(sealed, sa.JSON))
        )
        for row in (task, orphan, deleting):
            task_store.insert_task(conn, row)
    with db.read() as conn:
        with pytest.raises(SecretError):  # reading it whole opens the secrets
            install_store.install_by_id(conn, install["id"])
    with db.write_statement() as conn:
        claimed, _ = task_store.claim_or_next_due(conn, "w1", now=10, lease_ms=100)
    assert claimed is not None and claimed["id"] == task["id"]
    assert claimed["install"] == {**install, "secret_inputs": sealed}
    with pytest.raises(SecretError):  # opened by the task that uses them, where a failure is that task's alone
        install_store.unseal_secret_inputs(db.engine.dialect, claimed["install"]["secret_inputs"])
    assert install_store.unseal_secret_inputs(db.engine.dialect, {}) == {}
    with db.write() as conn:
        following = task_store.claim_announced_later(conn, "w1", now=10, lease_ms=100).get()
        assert following is not None and following["id"] == orphan["id"] and following["install"] is None
        last = task_store.claim_announced_later(conn, "w1", now=10, lease_ms=100).get()
        assert last is not None and last["id"] == deleting["id"] and last["install"] is None  # a delete needs none
