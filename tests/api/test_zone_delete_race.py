"""A zone deleted while something is being created in it: one of the two wins, and nothing is left of a zone that
no longer exists (design §3.2: a zone goes with everything it holds; one with installs not deleted is a 409)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.helpers import create_package, simple_manifest
from zonecat.clock import now_ms
from zonecat.engine import installs as install_engine
from zonecat.engine.invariants import check
from zonecat.store import installs as install_store

INPUTS = {"client_id": "c", "client_secret": "s"}


def gone_zone_rows(api: Api) -> list[str]:
    with api.db.read() as conn:
        return [str(v) for v in check(conn, now_ms()) if v.rule == "zone-gone"]


class Deleter:
    """DELETE /zones/{zone} from a thread of its own, started from inside a request that is being served."""

    def __init__(self, api: Api, zone: str) -> None:
        self.api, self.zone = api, zone
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.status = self.api.delete(f"/zones/{self.zone}").status_code


def test_a_zone_deleted_while_an_install_is_decided(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = api.new_zone()
    deleter = Deleter(api, zone)
    decide: Callable[..., Any] = install_engine._decide

    def decide_while_the_zone_is_deleted(*args: Any, **kwargs: Any) -> Any:
        if not deleter.thread.is_alive() and deleter.status is None:
            deleter.thread.start()
            # On SQLite the request is decided before its write transaction: the deletion goes through now. On
            # PostgreSQL it is decided inside the write transaction, which holds the zone: the deletion waits.
            deleter.thread.join(timeout=30 if api.db.is_sqlite else 0.5)
            assert deleter.thread.is_alive() != api.db.is_sqlite
        return decide(*args, **kwargs)

    monkeypatch.setattr(install_engine, "_decide", decide_while_the_zone_is_deleted)
    response = api.post(f"/zones/{zone}/installs", json={"package_id": "linear-api", "inputs": INPUTS})
    deleter.thread.join(timeout=20)
    assert not deleter.thread.is_alive()
    if api.db.is_sqlite:
        # The zone was gone before the install was written: the install is refused, the deletion stands.
        assert deleter.status == 204
        assert response.status_code == 404, response.text
    else:
        # The deletion waited for the install, then found it: the zone stays, with its install.
        assert response.status_code == 202, response.text
        assert deleter.status == 409
        assert api.wait_task(zone, response.json()["id"])["status"] == "completed"
    assert gone_zone_rows(api) == []


def at_once(*calls: Callable[[], int]) -> list[int]:
    """Run the calls in threads of their own, released together; their answers in order."""
    answers: list[int] = [0] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def delete_zone(api: Api, zone: str) -> int:
    return int(api.delete(f"/zones/{zone}").status_code)


def race(api: Api, rounds: int, create: Callable[[str], int], created: int) -> None:
    """Each round: a new zone (and what ``create`` needs made ahead, by its ``prepare``), then ``create`` in it and
    the zone's deletion at once; never both done with something of the zone left behind."""
    for _ in range(rounds):
        zone = api.new_zone()
        prepare = getattr(create, "prepare", None)
        target = prepare(zone) if prepare is not None else zone
        creation, deletion = at_once(functools.partial(create, target), functools.partial(delete_zone, api, zone))
        assert creation in (created, 404), (creation, deletion)
        assert deletion in (204, 409), (creation, deletion)
        assert gone_zone_rows(api) == [], (creation, deletion)


def test_an_entity_created_while_its_zone_is_deleted(api: Api) -> None:
    def create(zone: str) -> int:
        body = {"identifier": "https://issuer.example", "name": "Issuer"}
        return int(api.post(f"/zones/{zone}/providers", json=body).status_code)

    race(api, 12, create, 201)


def test_a_package_created_while_its_zone_is_deleted(api: Api) -> None:
    def create(zone: str) -> int:
        manifest = simple_manifest(f"race-{now_ms()}")
        return int(api.post(f"/zones/{zone}/packages", json={"manifest": manifest}).status_code)

    race(api, 12, create, 201)


def test_an_install_requested_while_its_zone_is_deleted(api: Api) -> None:
    def create(zone: str) -> int:
        response = api.post(f"/zones/{zone}/installs", json={"package_id": "linear-api", "inputs": INPUTS})
        if response.status_code == 202:
            assert api.wait_task(zone, response.json()["id"])["status"] == "completed"
        return int(response.status_code)

    race(api, 12, create, 202)


def test_a_release_while_its_zone_is_deleted(api: Api) -> None:
    class Release:
        def prepare(self, zone: str) -> str:  # the package, made before the race: its path is what create gets
            package = create_package(api, zone, simple_manifest(f"rel-{now_ms()}"), release=False)
            return f"/zones/{zone}/packages/{package['id']}/versions"

        def __call__(self, versions: str) -> int:
            return int(api.post(versions, json={}).status_code)

    race(api, 8, Release(), 201)


def test_a_package_deleted_while_it_is_installed(api: Api) -> None:
    """One of the two wins: an install that was accepted keeps its package (a package with installs that are not
    deleted cannot be deleted), or the install finds no package."""
    zone = api.new_zone()
    inputs = {"app_name": "raced"}
    for round_ in range(10):
        package = create_package(api, zone, simple_manifest(f"gone-{round_}-{now_ms()}"))
        path = f"/zones/{zone}/packages/{package['id']}"

        def install(package_id: str = package["id"]) -> int:
            body = {"package_id": package_id, "inputs": inputs}
            return int(api.post(f"/zones/{zone}/installs", json=body).status_code)

        def delete(path: str = path) -> int:
            return int(api.delete(path).status_code)

        installed, deleted = at_once(install, delete)
        assert (installed, deleted) in ((202, 409), (404, 204)), (installed, deleted)
        assert api.get(path).status_code == (200 if installed == 202 else 404)


def test_a_delete_that_loses_to_one_already_finished_returns_its_task(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two DELETEs of one install: the one that finds the install moved by the other, whose task has even ended
    by then, answers with that task (design §2), not a 409."""
    zone = api.new_zone()
    install_id = api.install(zone, "linear-api", INPUTS)["install_id"]
    if api.db.is_sqlite:  # writers take turns: the second DELETE sees the first one's task
        first = api.delete(f"/zones/{zone}/installs/{install_id}").json()
        api.wait_task(zone, first["id"])
        second = api.delete(f"/zones/{zone}/installs/{install_id}")
        assert (second.status_code, second.json()["id"]) == (202, first["id"])
        return
    move = install_store.move_install
    winner: dict[str, Any] = {}
    raced: list[bool] = []

    def lose_to_a_delete_that_ends_first(*args: Any, **kwargs: Any) -> bool:
        if not raced:  # the first DELETE, about to move the install: the other one comes first, and ends
            raced.append(True)

            def other() -> None:  # on a connection of its own (its own move is the real one)
                winner.update(api.delete(f"/zones/{zone}/installs/{install_id}").json())
                api.wait_task(zone, winner["id"])

            thread = threading.Thread(target=other)
            thread.start()
            thread.join(timeout=30)
        return bool(move(*args, **kwargs))

    monkeypatch.setattr(install_store, "move_install", lose_to_a_delete_that_ends_first)
    response = api.delete(f"/zones/{zone}/installs/{install_id}")
    assert response.status_code == 202, response.text
    assert response.json()["id"] == winner["id"]
    assert response.json()["status"] == "completed"
