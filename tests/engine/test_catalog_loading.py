"""Loading the global catalog at start-up: idempotent, a changed manifest becomes the next version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zonecat import errors
from zonecat.engine.access import Principal
from zonecat.engine.bootstrap import ORGANIZATION_ID
from zonecat.engine.packages import catalog_files, create_package, load_global_catalog
from zonecat.ids import new_id
from zonecat.store import packages as package_store
from zonecat.store import zones as zone_store
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


def _zone_with_package(db: Database, name: str) -> str:
    """A zone with a package of its own named ``name`` (made through the engine, as the API makes it)."""
    admin = Principal("tok_test", ORGANIZATION_ID, None, read_only=False, admin=True)
    zone_id = _zone(db)
    create_package(db, admin, zone_id, {**MANIFEST, "name": name})
    return zone_id


def _zone(db: Database) -> str:
    zone_id = new_id("zon")
    row = {"id": zone_id, "organization_id": ORGANIZATION_ID, "name": f"zone {zone_id}", "description": None}
    with db.write() as conn:
        zone_store.insert_zone(conn, {**row, "created_at_ms": 1, "updated_at_ms": 1})
    return zone_id


def _vault_catalog(tmp_path: Path) -> Path:
    """A catalog directory holding the vault manifest."""
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "vault.json").write_text(json.dumps(MANIFEST))
    return catalog


def test_a_new_global_package_never_takes_a_slug_a_zone_package_has(sqlite_db: Database, tmp_path: Path) -> None:
    # A zone's package was there first; a catalog manifest named like it is refused, so a slug names one package.
    zones = sorted(_zone_with_package(sqlite_db, "Vault Secret") for _ in range(2))
    catalog = _vault_catalog(tmp_path)
    (catalog / "other.json").write_text(json.dumps({**MANIFEST, "name": "Other Vault"}))
    problems = load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog)
    assert problems == [
        f"vault.json: not loaded: slug 'vault-secret' already names a package of zones {zones[0]}, {zones[1]}; "
        "rename the manifest, or delete that zone package (a package's slug never changes)"
    ]
    assert versions(sqlite_db, "other-vault") == [1]
    with sqlite_db.read() as conn:
        assert package_store.global_package_by_slug(conn, ORGANIZATION_ID, "vault-secret") is None
        for zone_id in zones:
            found = package_store.find_package_brief(conn, ORGANIZATION_ID, zone_id, "vault-secret")
            assert found is not None and found["id"].startswith("pkg_")


def test_a_global_package_already_loaded_keeps_its_slug(sqlite_db: Database, tmp_path: Path) -> None:
    catalog = _vault_catalog(tmp_path)
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog) == []
    # No zone can take it since (409), and a reload or a new version of it is not refused.
    with pytest.raises(errors.Conflict):
        _zone_with_package(sqlite_db, "Vault Secret")
    (catalog / "vault.json").write_text(json.dumps({**MANIFEST, "description": "now documented"}))
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog) == []
    assert versions(sqlite_db, "vault-secret") == [1, 2]


def test_an_overlap_from_before_the_rule_is_reported_at_each_load(sqlite_db: Database, tmp_path: Path) -> None:
    catalog = _vault_catalog(tmp_path)
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog) == []
    # A zone package written with the global one's slug, as it could be before the rule (bypassing the check).
    zone_id = _zone(sqlite_db)
    with sqlite_db.write() as conn:
        global_row = package_store.global_package_by_slug(conn, ORGANIZATION_ID, "vault-secret")
        assert global_row is not None
        package_store.insert_package(
            conn, {**global_row, "id": new_id("pkg"), "zone_key": zone_id, "scope": "zone", "draft_id": new_id("drf")}
        )
    assert load_global_catalog(sqlite_db, ORGANIZATION_ID, catalog) == [
        f"vault.json: slug 'vault-secret' also names a package of zone {zone_id}, made before such overlaps were "
        "refused; there it names the zone's package (delete that package to install this one by slug)"
    ]
    assert versions(sqlite_db, "vault-secret") == [1]
