"""Packages, their drafts and their released versions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from zonecat.domain.paging import PageRequest
from zonecat.store.paging import Page, fetch_page
from zonecat.store.prepared import Answer, Prepared
from zonecat.store.schema import insert_row, installs, package_versions, packages, zones

Row = dict[str, Any]
GLOBAL = ""


def insert_package(conn: sa.Connection, row: Row) -> None:
    insert_row(conn, packages, row)


def _visible(organization_id: str, zone_id: str) -> list[sa.ColumnElement[bool]]:
    return [packages.c.organization_id == organization_id, packages.c.zone_key.in_([GLOBAL, zone_id])]


# A slug names one package: a zone package cannot take a global one's (409), nor a new global package a zone
# package's (``load_global_catalog``). A database where both came to exist before that second rule still answers
# one package: the zone's own, which was there first.
_ZONE_FIRST = packages.c.zone_key.desc()  # a global package's key is '', below every zone id


def find_package(conn: sa.Connection, organization_id: str, zone_id: str, ref: str) -> Row | None:
    """The package visible in the zone whose id or slug is ``ref``."""
    query = (
        sa.select(packages)
        .where(*_visible(organization_id, zone_id), sa.or_(packages.c.id == ref, packages.c.slug == ref))
        .order_by(_ZONE_FIRST)
    )
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


# What an install request needs of a package and a version: not the manifests, whose JSON is the bulk of each row.
_PACKAGE_BRIEF = (packages.c.id, packages.c.slug)
_VERSION_BRIEF = (package_versions.c.id, package_versions.c.version, package_versions.c.archived_at_ms)


# Built once, with bound parameters, and run through the driver: an install request makes these reads every time.
_FIND_PACKAGE_BRIEF_STATEMENT = (
    sa.select(*_PACKAGE_BRIEF)
    .where(
        packages.c.organization_id == sa.bindparam("organization_id"),
        packages.c.zone_key.in_([GLOBAL, sa.bindparam("zone_id")]),
        sa.or_(packages.c.id == sa.bindparam("ref"), packages.c.slug == sa.bindparam("ref")),
    )
    .order_by(_ZONE_FIRST)
)
_FIND_PACKAGE_BRIEF = Prepared(_FIND_PACKAGE_BRIEF_STATEMENT)


def _current(column: sa.Column[Any]) -> sa.ScalarSelect[Any]:
    """``column`` of the current version (the newest unarchived) of the package of the enclosing query's row."""
    return (
        sa.select(column)
        .where(package_versions.c.package_id == packages.c.id, package_versions.c.archived_at_ms.is_(None))
        .order_by(package_versions.c.version.desc())
        .limit(1)
        .scalar_subquery()
    )


# ``_FIND_PACKAGE_BRIEF`` with its current version's id and number (None when it has none), in one statement: an
# install request that names no version reads both in one round trip, in one snapshot.
_FIND_PACKAGE_BRIEF_WITH_CURRENT = Prepared(
    _FIND_PACKAGE_BRIEF_STATEMENT.add_columns(
        _current(package_versions.c.id).label("current_version_id"),
        _current(package_versions.c.version).label("current_version"),
    ).limit(1)
)
_CURRENT_VERSION_BRIEF = Prepared(
    sa.select(*_VERSION_BRIEF)
    .where(package_versions.c.package_id == sa.bindparam("package_id"), package_versions.c.archived_at_ms.is_(None))
    .order_by(package_versions.c.version.desc())
    .limit(1)
)
_FIND_VERSION_BRIEF = Prepared(
    sa.select(*_VERSION_BRIEF).where(
        package_versions.c.package_id == sa.bindparam("package_id"),
        package_versions.c.version == sa.bindparam("number"),
    )
)


def find_package_brief(conn: sa.Connection, organization_id: str, zone_id: str, ref: str) -> Row | None:
    """``find_package``, id and slug only."""
    return find_package_brief_later(conn, organization_id, zone_id, ref).get()


def find_package_brief_later(conn: sa.Connection, organization_id: str, zone_id: str, ref: str) -> Answer[Row | None]:
    """``find_package_brief``, read when asked for (see ``prepared.answered_together``)."""
    params = {"organization_id": organization_id, "zone_id": zone_id, "ref": ref}
    return _FIND_PACKAGE_BRIEF.first_later(conn, params)


def find_package_brief_with_current_later(
    conn: sa.Connection, organization_id: str, zone_id: str, ref: str
) -> Answer[Row | None]:
    """``find_package_brief`` plus ``current_version_id`` and ``current_version`` (both None without a current
    version), read when asked for (see ``prepared.answered_together``)."""
    params = {"organization_id": organization_id, "zone_id": zone_id, "ref": ref}
    return _FIND_PACKAGE_BRIEF_WITH_CURRENT.first_later(conn, params)


def current_version_brief(conn: sa.Connection, package_id: str) -> Row | None:
    """``current_version`` without its manifest: id, version, archived_at_ms."""
    return _CURRENT_VERSION_BRIEF.first(conn, {"package_id": package_id})


def find_version_brief(conn: sa.Connection, package_id: str, number: int) -> Row | None:
    """The version numbered ``number``, without its manifest: id, version, archived_at_ms."""
    return _FIND_VERSION_BRIEF.first(conn, {"package_id": package_id, "number": number})


_INSTALLABLE_IN = Prepared(
    sa.select(package_versions.c.id).where(
        package_versions.c.id == sa.bindparam("version_id"),
        package_versions.c.archived_at_ms.is_(None),
        sa.exists().where(zones.c.id == sa.bindparam("zone_id"), zones.c.organization_id == sa.bindparam("org")),
    )
)


def installable_in(conn: sa.Connection, version_id: str, organization_id: str, zone_id: str) -> bool:
    """Whether the version still exists and is not archived, and the zone it is to be installed in still exists.
    For a write transaction that decided a request before it began (SQLite: it holds the database's write lock,
    so nothing changes under it from here on)."""
    found = _INSTALLABLE_IN.first(conn, {"version_id": version_id, "zone_id": zone_id, "org": organization_id})
    return found is not None


_MANIFEST = Prepared(sa.select(package_versions.c.manifest).where(package_versions.c.id == sa.bindparam("version_id")))


def version_manifest(conn: sa.Connection, version_id: str) -> Row | None:
    """The raw manifest of a version, by id."""
    found = _MANIFEST.first(conn, {"version_id": version_id})
    return dict(found["manifest"]) if found else None


def global_package_by_slug(conn: sa.Connection, organization_id: str, slug: str) -> Row | None:
    query = sa.select(packages).where(
        packages.c.organization_id == organization_id, packages.c.zone_key == GLOBAL, packages.c.slug == slug
    )
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def lock_slug(conn: sa.Connection, organization_id: str, slug: str) -> None:
    """Serialise, until the transaction ends, the writers that check and then take ``slug`` in the organization:
    a zone package and a global one may not both take it, and no constraint spans the two scopes. On SQLite the
    write transaction already holds the database's one write lock."""
    if conn.dialect.name == "postgresql":
        key = sa.func.hashtextextended(sa.literal(f"zonecat package slug {organization_id}/{slug}"), 0)
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def zones_with_slug(conn: sa.Connection, organization_id: str, slug: str) -> list[str]:
    """The zones that have a package of their own with ``slug``, in order."""
    query = (
        sa.select(packages.c.zone_key)
        .where(packages.c.organization_id == organization_id, packages.c.zone_key != GLOBAL, packages.c.slug == slug)
        .order_by(packages.c.zone_key)
    )
    return [str(zone_id) for zone_id in conn.execute(query).scalars()]


def slug_taken(conn: sa.Connection, organization_id: str, zone_id: str, slug: str) -> bool:
    """True when a global package, or a package of this zone, already has ``slug``."""
    query = sa.select(packages.c.id).where(*_visible(organization_id, zone_id), packages.c.slug == slug)
    return conn.execute(query).first() is not None


def list_packages(
    conn: sa.Connection,
    organization_id: str,
    zone_id: str,
    request: PageRequest,
    slug: str | None = None,
    kinds: list[str] | None = None,
) -> Page:
    where = _visible(organization_id, zone_id)
    if slug is not None:
        where.append(packages.c.slug == slug)
    if kinds:
        where.append(packages.c.kind.in_(kinds))
    return fetch_page(conn, packages, where, request)


def update_package(conn: sa.Connection, package_id: str, changes: Row, expected_sha: str | None = None) -> bool:
    """Update a package row; with ``expected_sha`` only while the draft still has that sha."""
    query = packages.update().where(packages.c.id == package_id)
    if expected_sha is not None:
        query = query.where(packages.c.draft_sha == expected_sha)
    return conn.execute(query.values(**changes)).rowcount == 1


def delete_package(conn: sa.Connection, package_id: str) -> None:
    conn.execute(package_versions.delete().where(package_versions.c.package_id == package_id))
    conn.execute(packages.delete().where(packages.c.id == package_id))


def live_installs_of(conn: sa.Connection, package_id: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(installs)
        .where(installs.c.package_id == package_id, installs.c.status != "deleted")
    )
    return int(conn.execute(query).scalar_one())


def insert_version(conn: sa.Connection, row: Row) -> None:
    insert_row(conn, package_versions, row)


def next_version_number(conn: sa.Connection, package_id: str) -> int:
    query = sa.select(sa.func.max(package_versions.c.version)).where(package_versions.c.package_id == package_id)
    return int(conn.execute(query).scalar_one() or 0) + 1


def find_version(conn: sa.Connection, package_id: str, ref: str | int) -> Row | None:
    """A version of the package by id or by number."""
    condition: sa.ColumnElement[bool]
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and len(ref) < 10):
        condition = package_versions.c.version == int(ref)
    else:
        condition = package_versions.c.id == ref
    query = sa.select(package_versions).where(package_versions.c.package_id == package_id, condition)
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def current_version(conn: sa.Connection, package_id: str) -> Row | None:
    """The latest version that is not archived."""
    query = (
        sa.select(package_versions)
        .where(package_versions.c.package_id == package_id, package_versions.c.archived_at_ms.is_(None))
        .order_by(package_versions.c.version.desc())
        .limit(1)
    )
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def latest_version(conn: sa.Connection, package_id: str) -> Row | None:
    query = (
        sa.select(package_versions)
        .where(package_versions.c.package_id == package_id)
        .order_by(package_versions.c.version.desc())
        .limit(1)
    )
    found = conn.execute(query).first()
    return dict(found._mapping) if found else None


def list_versions(conn: sa.Connection, package_id: str, request: PageRequest) -> Page:
    return fetch_page(conn, package_versions, [package_versions.c.package_id == package_id], request)


def archive_version(conn: sa.Connection, version_id: str, now: int) -> None:
    conn.execute(
        package_versions.update()
        .where(package_versions.c.id == version_id, package_versions.c.archived_at_ms.is_(None))
        .values(archived_at_ms=now)
    )
