"""Package authoring (drafts, releases, archive, delete) and loading the global catalog at start-up."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.clock import now_ms
from zonecat.domain import manifest as manifests
from zonecat.domain.paging import decimal_digits
from zonecat.domain.problems import Problem
from zonecat.engine.access import Principal, held_zone, locked_zone
from zonecat.ids import new_id
from zonecat.store import packages as package_store
from zonecat.store.database import Database

Row = dict[str, Any]
log = logging.getLogger("zonecat.catalog")


def _invalid(message: str, problems: list[Problem]) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, [errors.Detail(p.field, p.message) for p in problems])


def _check_draft(raw: object) -> dict[str, Any]:
    problems = manifests.draft_problems(raw)
    if problems:
        raise _invalid("the manifest is not a valid draft", problems)
    assert isinstance(raw, dict)
    return raw


def _draft_columns(raw: dict[str, Any], now: int) -> Row:
    return {
        "draft_manifest": raw,
        "draft_sha": manifests.manifest_sha(raw),
        "draft_updated_at_ms": now,
        "updated_at_ms": now,
    }


def _sync_shown(conn: sa.Connection, package: Row) -> None:
    """Keep the row's ``name`` and ``kind`` equal to what ``Package`` shows (the current version, else the draft),
    so that the ``kind`` filter of the list selects exactly the packages whose ``kind`` it shows."""
    current = package_store.current_version(conn, package["id"])
    manifest = current["manifest"] if current is not None else package["draft_manifest"]
    shown = {"name": manifest["name"], "kind": manifest["kind"]}
    if any(package.get(key) != value for key, value in shown.items()):
        package_store.update_package(conn, package["id"], shown)
        package.update(shown)


def find_visible(conn: sa.Connection, principal: Principal, zone_id: str, ref: str) -> Row:
    package = package_store.find_package(conn, principal.organization_id, zone_id, ref)
    if package is None:
        raise errors.NotFound(f"package {ref} not found")
    return package


def _editable(conn: sa.Connection, principal: Principal, zone_id: str, ref: str, *, exclusive: bool = False) -> Row:
    """The zone's own package ``ref``, for a write transaction: the zone held against its deletion first. With
    ``exclusive`` (the package's deletion) the zone is locked instead: every write that holds it (an install of
    this package among them) ends first, and none begins until this transaction ends."""
    if exclusive:
        locked_zone(conn, principal, zone_id)
    else:
        held_zone(conn, principal, zone_id)
    package = find_visible(conn, principal, zone_id, ref)
    if package["scope"] == "global":
        raise errors.Forbidden(f"package {package['slug']} belongs to the global catalog and cannot be changed here")
    return package


def create_package(db: Database, principal: Principal, zone_id: str, raw: object) -> Row:
    manifest = _check_draft(raw)
    slug = manifests.slugify(manifest["name"])
    now = now_ms()
    with db.write() as conn:
        held_zone(conn, principal, zone_id)
        package_store.lock_slug(conn, principal.organization_id, slug)
        if package_store.slug_taken(conn, principal.organization_id, zone_id, slug):
            raise errors.Conflict(
                f"a package with slug '{slug}' already exists in this zone or the global catalog",
                [errors.Detail("manifest.name", f"slug '{slug}' is taken", "conflict")],
            )
        row: Row = {
            "id": new_id("pkg", now),
            "organization_id": principal.organization_id,
            "zone_key": zone_id,
            "scope": "zone",
            "slug": slug,
            "draft_id": new_id("drf", now),
            "created_at_ms": now,
            "name": manifest["name"],
            "kind": manifest["kind"],
            **_draft_columns(manifest, now),
        }
        try:
            with conn.begin_nested():
                package_store.insert_package(conn, row)
        except sa.exc.IntegrityError as exc:
            raise errors.Conflict(f"a package with slug '{slug}' already exists") from exc
    return row


def replace_draft(db: Database, principal: Principal, zone_id: str, ref: str, raw: object, if_match: str | None) -> Row:
    manifest = _check_draft(raw)
    now = now_ms()
    with db.write() as conn:
        package = _editable(conn, principal, zone_id, ref)
        if if_match is not None and not _if_match_holds(if_match, package["draft_sha"]):
            raise errors.Conflict(
                "the draft changed since you read it (If-Match does not match its manifest_sha)",
                [errors.Detail("If-Match", f"current manifest_sha is {package['draft_sha']}", "conflict")],
            )
        changes = _draft_columns(manifest, now)
        if not package_store.update_package(conn, package["id"], changes, expected_sha=package["draft_sha"]):
            raise errors.Conflict("the draft changed concurrently; read it again")
        package.update(changes)
        _sync_shown(conn, package)
    return package


def _if_match_holds(header: str, current_sha: str) -> bool:
    """RFC 9110 ``If-Match``: ``*`` or a comma-separated list of entity tags, compared strongly (a weak tag never
    matches). A bare sha without quotes is accepted too."""
    values = [value.strip() for value in header.split(",") if value.strip()]
    if "*" in values:
        return True
    return any(not value.startswith("W/") and value.strip('"') == current_sha for value in values)


def release(db: Database, principal: Principal, zone_id: str, ref: str, expected_sha: str | None) -> Row:
    """Release the draft as the next version after the full release checks."""
    now = now_ms()
    with db.write() as conn:
        package = _editable(conn, principal, zone_id, ref)
        return _release_draft(conn, package, expected_sha, "customer", now)


def _release_draft(conn: sa.Connection, package: Row, expected_sha: str | None, owner_type: str, now: int) -> Row:
    if expected_sha is not None and expected_sha != package["draft_sha"]:
        raise errors.Conflict(
            "the draft is not the one you meant to release (manifest_sha differs)",
            [errors.Detail("manifest_sha", f"current draft manifest_sha is {package['draft_sha']}", "conflict")],
        )
    problems = manifests.release_problems(package["draft_manifest"])
    if problems:
        raise _invalid(f"the draft of {package['slug']} fails {len(problems)} release check(s)", problems)
    latest = package_store.latest_version(conn, package["id"])
    if latest is not None and latest["manifest_sha"] == package["draft_sha"]:
        raise errors.Conflict(
            f"the draft is identical to version {latest['version']}; change it before releasing",
            [errors.Detail("manifest_sha", f"same as version {latest['version']}", "conflict")],
        )
    version: Row = {
        "id": new_id("ver", now),
        "package_id": package["id"],
        "version": package_store.next_version_number(conn, package["id"]),
        "manifest": package["draft_manifest"],
        "manifest_sha": package["draft_sha"],
        "owner_type": owner_type,
        "created_at_ms": now,
        "archived_at_ms": None,
    }
    try:
        with conn.begin_nested():
            package_store.insert_version(conn, version)
    except sa.exc.IntegrityError as exc:
        raise errors.Conflict("another release of this package happened at the same time; retry") from exc
    package_store.update_package(conn, package["id"], {"updated_at_ms": now})
    _sync_shown(conn, package)
    return version


def find_version(conn: sa.Connection, package_id: str, ref: str) -> Row | None:
    """A version by id or by number as the API names it. A reference that is neither ASCII digits nor ASCII (the
    store would read "\u00b2" as a number, since ``str.isdigit`` says so) is no version."""
    number = decimal_digits(ref)
    if number is not None:
        return package_store.find_version(conn, package_id, number)
    if not ref.isascii():
        return None
    return package_store.find_version(conn, package_id, ref)


def archive(db: Database, principal: Principal, zone_id: str, ref: str, version_ref: str) -> Row:
    now = now_ms()
    with db.write() as conn:
        package = _editable(conn, principal, zone_id, ref)
        version = find_version(conn, package["id"], version_ref)
        if version is None:
            raise errors.NotFound(f"version {version_ref} of package {package['slug']} not found")
        package_store.archive_version(conn, version["id"], now)
        _sync_shown(conn, package)
        found = package_store.find_version(conn, package["id"], version["id"])
        assert found is not None
    return found


def delete_package(db: Database, principal: Principal, zone_id: str, ref: str) -> None:
    with db.write() as conn:
        package = _editable(conn, principal, zone_id, ref, exclusive=True)
        live = package_store.live_installs_of(conn, package["id"])
        if live:
            raise errors.Conflict(
                f"package {package['slug']} has {live} install(s) that are not deleted; uninstall them first"
            )
        package_store.delete_package(conn, package["id"])


# -- the global catalog ------------------------------------------------------------------------------------


def catalog_files(directory: Path | None) -> list[tuple[str, str]]:
    """(file name, text) of every manifest in the catalog directory, or in the catalog shipped with zonecat."""
    if directory is not None:
        paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        return [(p.name, p.read_text(encoding="utf-8")) for p in paths]
    shipped = resources.files("zonecat") / "catalog"
    entries = sorted((entry for entry in shipped.iterdir() if entry.name.endswith((".yaml", ".yml", ".json"))), key=str)
    return [(entry.name, entry.read_text(encoding="utf-8")) for entry in entries]


def load_global_catalog(db: Database, organization_id: str, directory: Path | None) -> list[str]:
    """Load every catalog manifest as a global package; a changed manifest becomes that package's next version.

    A manifest that fails its checks is reported and skipped; the others still load. So is a new manifest whose slug
    a zone's own package already has: a slug names one package (design §3), and the zone's came first. A global
    package that already shares its slug with zone packages (loaded before that rule) is reported too: in those
    zones the slug names the zone's package. Returns the problems.
    """
    reports: list[str] = []
    for file_name, text in catalog_files(directory):
        try:
            raw = manifests.load_manifest_text(text)
        except errors.ZonecatError as exc:
            reports.append(f"{file_name}: {exc.message}")
            continue
        problems = manifests.draft_problems(raw) or manifests.release_problems(raw)
        if problems:
            reports.append(f"{file_name}: " + "; ".join(f"{p.field}: {p.message}" for p in problems))
            continue
        slug = manifests.slugify(raw["name"])
        loaded, taken_by = _load_one(db, organization_id, raw, slug)
        if taken_by:
            zones = ", ".join(taken_by[:5]) + (f" and {len(taken_by) - 5} more" if len(taken_by) > 5 else "")
            zones = f"{'zone' if len(taken_by) == 1 else 'zones'} {zones}"
            if loaded:
                reports.append(
                    f"{file_name}: slug {slug!r} also names a package of {zones}, made before such overlaps were "
                    "refused; there it names the zone's package (delete that package to install this one by slug)"
                )
            else:
                reports.append(
                    f"{file_name}: not loaded: slug {slug!r} already names a package of {zones}; rename the manifest, "
                    "or delete that zone package (a package's slug never changes)"
                )
    return reports  # the caller logs them (``bootstrap.boot``)


def _load_one(db: Database, organization_id: str, raw: dict[str, Any], slug: str) -> tuple[bool, list[str]]:
    """Loads one checked manifest (``slug`` is its name's) unless its slug is new and some zones have a package of
    their own with it; returns whether the global package exists (now), and the zones whose own package has it."""
    now = now_ms()
    with db.write() as conn:
        package_store.lock_slug(conn, organization_id, slug)
        package = package_store.global_package_by_slug(conn, organization_id, slug)
        taken_by = package_store.zones_with_slug(conn, organization_id, slug)
        if package is None:
            if taken_by:
                return False, taken_by
            package = {
                "id": new_id("pkg", now),
                "organization_id": organization_id,
                "zone_key": package_store.GLOBAL,
                "scope": "global",
                "slug": slug,
                "draft_id": new_id("drf", now),
                "created_at_ms": now,
                "name": raw["name"],
                "kind": raw["kind"],
                **_draft_columns(raw, now),
            }
            package_store.insert_package(conn, package)
        else:
            latest = package_store.latest_version(conn, package["id"])
            if latest is not None and latest["manifest_sha"] == manifests.manifest_sha(raw):
                return True, taken_by
            changes = _draft_columns(raw, now)
            package_store.update_package(conn, package["id"], changes)
            package.update(changes)
        version = _release_draft(conn, package, None, "platform", now)
        log.info("global package loaded", extra={"slug": slug, "version": version["version"]})
    return True, taken_by
