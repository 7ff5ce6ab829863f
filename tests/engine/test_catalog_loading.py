"""Loading the global catalog at start-up: idempotent, a changed manifest becomes the next version."""

from __future__ import annotations

import json
from pathlib import Path

from zonecat.engine.bootstrap import ORGANIZATION_ID
from zonecat.engine.packages import catalog_files, load_global_catalog
from zonecat.store import packages as package_store
from zonecat.store.database import Database

MANIFEST = {
    "kind": "custom",
    "name": "Vault Secret",
    "inputs": {"schema": {"type": "object", "properties": {"value": {"type": "string"}}}},
    "entities": {"vault": {"type": "secret", "bindings": '{"identifier": "vault", "name": "Vault"}'}},
}


def versions(db: Database, slug: str) -> list[int]:
    with db.read() as conn:
        package = package_store.global_package_by_slug(conn, ORGANIZATION_ID, slug)
        assert package is not None
        latest = package_store.latest_version(conn, package["id"])
        assert latest is not None
        return list(range(1, latest["version"] + 1))


def test_the_shipped_catalog_loads_cleanly(sqlite_db: Database) -> None:
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, None) == []
    names = {name for name, _ in catalog_files(None)}
    assert {"linear.yaml", "github.yaml", "google-calendar.yaml", "google-drive.yaml"} <= names
    assert versions(sqlite_db, "google-calendar-api") == [1]


def test_reload_is_idempotent_and_a_change_is_the_next_version(sqlite_db: Database, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "vault.json").write_text(json.dumps(MANIFEST))
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog) == []
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog) == []
    assert versions(sqlite_db, "vault-secret") == [1]
    (catalog / "vault.json").write_text(json.dumps({**MANIFEST, "description": "now documented"}))
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog) == []
    assert versions(sqlite_db, "vault-secret") == [1, 2]


def test_a_broken_manifest_is_reported_and_the_rest_still_loads(sqlite_db: Database, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "good.json").write_text(json.dumps(MANIFEST))
    (catalog / "bad.yaml").write_text("kind: custom\nname: Bad\nentities:\n  x: {type: nosuchtype, bindings: '{}'}\n")
    (catalog / "garbage.yaml").write_text("{{{{ not yaml")
    problems = load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog)
    assert len(problems) == 2
    assert any(p.startswith("bad.yaml: ") and "nosuchtype" in p for p in problems)
    assert any(p.startswith("garbage.yaml: ") for p in problems)
    assert versions(sqlite_db, "vault-secret") == [1]
