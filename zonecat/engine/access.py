"""Who is asking: the principal behind a bearer token, and what it may see and change."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from zonecat import errors
from zonecat.store import zones as zone_store

TOKEN_PREFIX = "zc_"


@dataclass(frozen=True)
class Principal:
    token_id: str
    organization_id: str
    zones: tuple[str, ...] | None  # None: every zone of the organization
    read_only: bool
    admin: bool

    def sees_zone(self, zone_id: str) -> bool:
        return self.zones is None or zone_id in self.zones

    def require_zone(self, zone_id: str) -> None:
        """A zone this token may not see does not exist for it (404, never 403: its existence stays hidden)."""
        if not self.sees_zone(zone_id):
            raise errors.NotFound(f"zone {zone_id} not found")

    def require_write(self, zone_id: str | None = None) -> None:
        """A write needs a read-write token. On a zone's path the zone's visibility is checked first: a zone this
        token may not see is a 404 for every request, writes included (a 403 would tell it the request got further)."""
        if zone_id is not None:
            self.require_zone(zone_id)
        if self.read_only:
            raise errors.Forbidden("this token is read-only")

    def require_admin(self) -> None:
        if not self.admin:
            raise errors.Forbidden("only an organization-admin token may manage tokens")

    def require_organization_wide(self) -> None:
        if self.zones is not None:
            raise errors.Forbidden("only a token valid for every zone may create zones")


def hash_token(token: str) -> str:
    """Tokens are stored only as their SHA-256 (they are long random strings, so no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def visible_zone(conn: sa.Connection, principal: Principal, zone_id: str) -> dict[str, Any]:
    """The zone, if this token may see it; 404 otherwise (never revealing that it exists)."""
    principal.require_zone(zone_id)
    return found_zone(zone_store.get_zone(conn, principal.organization_id, zone_id), zone_id)


def held_zone(conn: sa.Connection, principal: Principal, zone_id: str) -> dict[str, Any]:
    """``visible_zone`` for a write transaction that adds rows to the zone: the zone is held against its deletion
    until the transaction ends (``zone_store.hold_zone``), then read; 404 when it is not (or no longer) there."""
    principal.require_zone(zone_id)
    zone_store.hold_zone(conn, zone_id)
    return found_zone(zone_store.get_zone(conn, principal.organization_id, zone_id), zone_id)


def locked_zone(conn: sa.Connection, principal: Principal, zone_id: str) -> dict[str, Any]:
    """``visible_zone`` for a write transaction that must see the zone's final state (the zone's deletion, or a
    package's, which count the installs that forbid it): every write that holds the zone (``held_zone``) ends
    first, and none begins until the transaction ends (``zone_store.lock_zone_exclusively``)."""
    principal.require_zone(zone_id)
    zone_store.lock_zone_exclusively(conn, zone_id)
    return found_zone(zone_store.get_zone(conn, principal.organization_id, zone_id), zone_id)


def found_zone(row: dict[str, Any] | None, zone_id: str) -> dict[str, Any]:
    """The zone row read for ``zone_id``; 404 when there was none (for a read made ahead, as ``visible_zone``'s)."""
    if row is None:
        raise errors.NotFound(f"zone {zone_id} not found")
    return row
