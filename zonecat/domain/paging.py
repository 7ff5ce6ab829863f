"""Opaque list cursors (design §3.1).

A cursor names the boundary item of a page by its id; ``inclusive`` is set only on the cursor an empty page
hands back, so that turning around after walking off the end still finds the boundary item. Lists are ordered
newest first, and ids sort by creation time, so the id alone is a total order.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from zonecat import errors

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_VERSION = "c1"


def decimal_digits(text: str, max_digits: int = 9) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits, else None.

    Stricter than ``int()``, which also takes signs, spaces, underscores and non-ASCII digits (U+0665), and than
    ``str.isdigit()``, which is true for "\\u00b2" that ``int()`` then refuses."""
    if not 1 <= len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


@dataclass(frozen=True)
class Cursor:
    boundary_id: str
    inclusive: bool = False

    def encode(self) -> str:
        raw = f"{_VERSION}|{self.boundary_id}|{int(self.inclusive)}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, parameter: str) -> Cursor:
        """Parse a cursor from the query string; ``BadRequest`` when it is not one of ours."""
        bad = errors.BadRequest(
            f"'{parameter}' is not a valid cursor; use pagination.after_cursor or before_cursor of a list",
            [errors.Detail(parameter, "malformed cursor", "bad_request")],
        )
        if not 1 <= len(token) <= 255:
            raise bad
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise bad from exc
        parts = raw.split("|")
        if len(parts) != 3 or parts[0] != _VERSION or parts[2] not in ("0", "1") or not parts[1]:
            raise bad
        if len(parts[1]) > 64 or not parts[1].isascii():
            raise bad
        return cls(parts[1], parts[2] == "1")


@dataclass(frozen=True)
class PageRequest:
    """What a list request asks for: at most ``limit`` items after or before a cursor."""

    limit: int = DEFAULT_LIMIT
    after: Cursor | None = None
    before: Cursor | None = None
    with_total: bool = False

    @classmethod
    def parse(
        cls, limit: str | int | None, after: str | None, before: str | None, with_total: bool = False
    ) -> PageRequest:
        if after is not None and before is not None:
            raise errors.BadRequest(
                "'after' and 'before' are mutually exclusive",
                [errors.Detail("after", "give either after or before, not both", "bad_request")],
            )
        if limit is None:
            count = DEFAULT_LIMIT
        elif isinstance(limit, int):
            count = limit
        else:
            parsed = decimal_digits(limit)
            if parsed is None:
                raise errors.BadRequest(
                    "'limit' must be an integer", [errors.Detail("limit", "not an integer", "bad_request")]
                )
            count = parsed
        if not 1 <= count <= MAX_LIMIT:
            raise errors.BadRequest(
                f"'limit' must be between 1 and {MAX_LIMIT}",
                [errors.Detail("limit", f"must be between 1 and {MAX_LIMIT}", "bad_request")],
            )
        return cls(
            limit=count,
            after=Cursor.decode(after, "after") if after is not None else None,
            before=Cursor.decode(before, "before") if before is not None else None,
            with_total=with_total,
        )
