"""Provisioning edge cases: one install naming the same entity twice, journal events around every step."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.api.conftest import Api
from tests.api.helpers import (
    CALENDAR,
    CREDS,
    create_package,
    delete_and_wait,
    pause_worker,
    run_due_tasks,
    start_delete,
    start_install,
)
from zonecat.engine.provisioner import MAX_ROLLBACK_ATTEMPTS
from zonecat.store import tasks as task_store
from zonecat.store.prepared import Answer
from zonecat.store.schema import installs
from zonecat.store.schema import tasks as task_rows
from zonecat.worker.worker import Worker


def twin_manifest(name: str) -> dict[str, Any]:
    """Two local names whose bindings produce the same natural key."""
    secret = '{"identifier": "twin-secret", "name": "Twin"}'
    return {
        "kind": "custom",
        "name": name,
        "entities": {"first": {"type": "secret", "bindings": secret}, "second": {"type": "secret", "bindings": secret}},
    }


def test_one_install_using_an_entity_under_two_names_creates_it_once_and_deletes_it_once(api: Api) -> None:
    zone = api.new_zone()
    package = create_package(api, zone, twin_manifest("Twins"))
    task = api.install(zone, package["id"])
    assert task["status"] == "completed", task.get("error_message")
    assert sorted(link["rel"] for link in task["links"]) == ["created", "shared"]
    entities = api.get(f"/zones/{zone}/entities").json()["items"]
    assert [e["identifier"] for e in entities] == ["twin-secret"]
    accepted, delete_task = delete_and_wait(api, zone, task["install_id"])
    assert accepted["warnings"] == []
    assert delete_task["status"] == "completed", delete_task.get("error_message")
    assert api.get(f"/zones/{zone}/installs/{task['install_id']}").json()["status"] == "deleted"
    assert api.get(f"/zones/{zone}/entities").json()["items"] == []


def test_every_step_is_announced_before_its_outcome(api: Api) -> None:
    zone = api.new_zone()
    task = api.install(zone, "google-calendar-api", {"client_id": "c", "client_secret": "s"})
    events = api.get(f"/zones/{zone}/catalog_tasks/{task['id']}/events").json()["items"]
    steps = [(e["kind"], e["local_name"], e["entity_type"]) for e in events if e["kind"].startswith("step_")]
    assert steps == [
        ("step_started", "google", "provider"),
        ("step_done", "google", "provider"),
        ("step_started", "calendar", "resource"),
        ("step_done", "calendar", "resource"),
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    _, delete_task = delete_and_wait(api, zone, task["install_id"])
    events = api.get(f"/zones/{zone}/catalog_tasks/{delete_task['id']}/events").json()["items"]
    steps = [
        (e["kind"], e["local_name"], e["entity_type"], e["action"]) for e in events if e["kind"].startswith("step_")
    ]
    assert steps == [
        ("step_started", "calendar", "resource", None),
        ("step_done", "calendar", "resource", "deleted"),
        ("step_started", "google", "provider", None),
        ("step_done", "google", "provider", "deleted"),
    ]


def test_an_end_refused_after_it_was_sent_rolls_back_with_the_claim_of_the_next_task(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's end, the install's move and the next claim go out together (one round trip on PostgreSQL) and are
    judged after: when the end is refused (the lease was lost meanwhile), none of it stays, the next claim included."""
    zone = api.new_zone()
    inputs = {"schema": {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}}
    one = {"e0": {"type": "secret", "bindings": '{"identifier": "refused-" + entities.inputs.run, "name": "n"}'}}
    package = create_package(api, zone, {"kind": "custom", "name": "refused end", "inputs": inputs, "entities": one})
    pause_worker(api)
    first, second = (start_install(api, zone, package["id"], {"run": str(index)}).json() for index in range(2))
    real = task_store.journal_later

    def refused_end(conn: Any, task_id: str, worker_id: str, *args: Any, **kwargs: Any) -> Answer[bool]:
        answer = real(conn, task_id, worker_id, *args, **kwargs)  # sent with the rest of the end
        ending = len(args) > 3 and args[3] and args[3].get("status") == "completed"
        return Answer.known(False) if ending and task_id == first["id"] else answer

    monkeypatch.setattr(task_store, "journal_later", refused_end)
    worker = Worker(api.db, api.worker.settings, name="refused")
    assert worker.run_one()
    monkeypatch.undo()
    assert worker.tasks_run == 1, "the next task was not handed over"
    second_now = api.get(f"/zones/{zone}/catalog_tasks/{second['id']}?redirect=false").json()
    assert second_now["status"] == "pending", "the claim sent with the refused end was rolled back"
    install = api.get(f"/zones/{zone}/installs/{first['install_id']}").json()
    assert install["status"] == "pending", "the install did not move"
    assert api.get(f"/zones/{zone}/catalog_tasks/{first['id']}?redirect=false").json()["status"] == "running"


def test_a_task_ends_in_the_transaction_that_claims_the_next_due_one(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """While tasks wait, the transaction that ends one claims the next (Worker._claim_next): two waiting installs
    take one claim of its own, and the other two claims (the second task, then none) join the tasks' ends."""
    zone = api.new_zone()
    chain = {
        f"e{index}": {
            "type": "secret",
            "bindings": f'{{"identifier": "s{index}-" + entities.inputs.run, "name": "secret {index}"}}',
        }
        for index in range(3)
    }
    inputs = {"schema": {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}}
    package = create_package(api, zone, {"kind": "custom", "name": "claim ahead", "inputs": inputs, "entities": chain})
    pause_worker(api)
    tasks = [start_install(api, zone, package["id"], {"run": str(index)}).json()["id"] for index in range(2)]
    worker = Worker(api.db, api.worker.settings, name="claims-ahead")
    claims: list[bool] = []  # for each claim: whether it ran in a transaction of its own
    on_its_own = threading.local()
    claim, claim_first, write_statement = (
        task_store.claim_announced_later,
        task_store.claim_or_next_due,
        api.db.write_statement,
    )

    def counted_claim(*args: Any, **kwargs: Any) -> Any:
        if not getattr(on_its_own, "counted", False):  # not the SQLite claim_or_next_due's own call
            claims.append(getattr(on_its_own, "set", False))
        return claim(*args, **kwargs)

    def counted_first_claim(*args: Any, **kwargs: Any) -> Any:
        claims.append(getattr(on_its_own, "set", False))
        on_its_own.counted = True
        try:
            return claim_first(*args, **kwargs)
        finally:
            on_its_own.counted = False

    @contextlib.contextmanager
    def own_statement() -> Iterator[Any]:
        on_its_own.set = True
        try:
            with write_statement() as conn:
                yield conn
        finally:
            on_its_own.set = False

    monkeypatch.setattr(task_store, "claim_announced_later", counted_claim)
    monkeypatch.setattr(task_store, "claim_or_next_due", counted_first_claim)
    monkeypatch.setattr(api.db, "write_statement", own_statement)
    assert worker.run_one()
    monkeypatch.undo()
    assert worker.tasks_run == 2
    assert claims == [True, False, False]
    for task_id in tasks:
        assert api.wait_task(zone, task_id)["status"] == "completed"
        events = api.get(f"/zones/{zone}/catalog_tasks/{task_id}/events").json()["items"]
        running = [event for event in events if event.get("status") == "running"]
        assert len(running) == 1 and "claims-ahead" in running[0]["message"]
    # A stopping worker claims nothing at the end of its task: the waiting one is left for the next claimer.
    waiting = start_install(api, zone, package["id"], {"run": "later"}).json()["id"]
    stopping = Worker(api.db, api.worker.settings, name="stopping")
    stopping.stop()
    with api.db.write() as conn:
        assert stopping._claim_next(conn).get() is None
    assert api.get(f"/zones/{zone}/catalog_tasks/{waiting}?redirect=false").json()["status"] == "pending"
    assert run_due_tasks(api) == 1


def test_write_only_inputs_no_key_can_open_fail_their_task_alone(api: Api) -> None:
    # The claim brings a create task's install with its write-only inputs sealed; the task opens them. A value the
    # key cannot open fails that task, not the claim: the queue behind it, and the task before it, go on.
    pause_worker(api)
    first, broken, last = api.new_zone(), api.new_zone(), api.new_zone()
    tasks = [start_install(api, zone, CALENDAR, CREDS).json() for zone in (first, broken, last)]
    with api.db.write() as conn:
        conn.execute(
            installs.update()
            .where(installs.c.id == tasks[1]["install_id"])
            .values(secret_inputs=sa.type_coerce({"enc": "zcs1.not-a-token"}, sa.JSON))
        )
    assert run_due_tasks(api) == 3  # one worker call: each task's end claimed the next
    zones = (first, broken, last)
    ended = [api.wait_task(zone, task["id"]) for zone, task in zip(zones, tasks, strict=True)]
    assert [task["status"] for task in ended] == ["completed", "failed", "completed"]
    assert "internal error" in ended[1]["error_message"]
    # Reads never open write-only inputs (the API never returns them): the broken install is read, listed and
    # deleted like any other.
    views = [api.get(f"/zones/{zone}/installs/{task['install_id']}") for zone, task in zip(zones, tasks, strict=True)]
    assert [view.json()["status"] for view in views] == ["active", "failed", "active"]
    assert [item["status"] for item in api.get(f"/zones/{broken}/installs").json()["items"]] == ["failed"]
    removal = start_delete(api, broken, tasks[1]["install_id"]).json()
    assert run_due_tasks(api) == 1
    assert api.wait_task(broken, removal["id"])["status"] == "completed"


def test_a_task_whose_install_vanished_ends_failed_at_once(api: Api) -> None:
    """Nothing left to move at the end: the task ends alone, instead of failing to end at every attempt."""
    pause_worker(api)
    zone = api.new_zone()
    response = api.post(f"/zones/{zone}/installs", json={"package_id": "linear-api", "inputs": CREDS})
    assert response.status_code == 202
    task_id, install_id = response.json()["id"], response.json()["install_id"]
    with api.db.write() as conn:  # as a zone deleted under the request could leave it (before zones were held)
        conn.execute(installs.delete().where(installs.c.id == install_id))
    run_due_tasks(api)
    task = api.get(f"/zones/{zone}/catalog_tasks/{task_id}?redirect=false").json()
    assert task["status"] == "failed", task
    assert "internal error" in task["error_message"]


def test_a_rollback_that_never_ends_is_abandoned(api: Api) -> None:
    pause_worker(api)
    zone = api.new_zone()
    response = api.post(f"/zones/{zone}/installs", json={"package_id": "linear-api", "inputs": CREDS})
    task_id = response.json()["id"]
    with api.db.write() as conn:  # as after twenty attempts whose rollback was interrupted every time
        conn.execute(
            task_rows.update()
            .where(task_rows.c.id == task_id)
            .values(phase="rollback", attempts=MAX_ROLLBACK_ATTEMPTS, error_message="entity 'x' failed: boom")
        )
    run_due_tasks(api)
    task = api.get(f"/zones/{zone}/catalog_tasks/{task_id}?redirect=false").json()
    assert task["status"] == "failed", task
    assert task["error_message"].startswith("entity 'x' failed: boom; its rollback was abandoned after 20 attempts")
    install = api.get(f"/zones/{zone}/installs/{response.json()['install_id']}").json()
    assert install["status"] == "failed"
    # and what it may have left goes with the install, as the message says
    deleted = api.delete(f"/zones/{zone}/installs/{install['id']}")
    assert deleted.status_code == 202, deleted.text
    run_due_tasks(api)
    assert api.get(f"/zones/{zone}/installs/{install['id']}").json()["status"] == "deleted"
