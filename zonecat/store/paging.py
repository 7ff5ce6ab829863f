"""Keyset paging over any table whose ``id`` sorts by creation time (newest first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from zonecat.domain.paging import Cursor, PageRequest


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    after_cursor: str | None
    before_cursor: str | None
    total_count: int | None


def fetch_page(
    conn: sa.Connection,
    table: sa.Table,
    where: list[sa.ColumnElement[bool]],
    request: PageRequest,
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
) -> Page:
    """One page of ``table`` rows matching ``where``, newest first, with cursors both ways; ``columns`` (every one of
    ``table``'s, by default) is what each row holds."""
    selected = tuple(columns) if columns is not None else tuple(table.c)
    id_col = table.c.id
    limit = request.limit

    def older_than(boundary: str, inclusive: bool = False) -> bool:
        bound = id_col <= boundary if inclusive else id_col < boundary
        return conn.execute(sa.select(id_col).where(*where, bound).limit(1)).first() is not None

    def newer_than(boundary: str, inclusive: bool = False) -> bool:
        bound = id_col >= boundary if inclusive else id_col > boundary
        return conn.execute(sa.select(id_col).where(*where, bound).limit(1)).first() is not None

    if request.before is not None:
        cursor = request.before
        bound = id_col >= cursor.boundary_id if cursor.inclusive else id_col > cursor.boundary_id
        query = sa.select(*selected).where(*where, bound).order_by(id_col.asc()).limit(limit + 1)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        more_newer = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        if rows:
            before = Cursor(rows[0]["id"]).encode() if more_newer else None
            after = Cursor(rows[-1]["id"]).encode() if older_than(rows[-1]["id"]) else None
        else:
            before = None
            after = Cursor(cursor.boundary_id, True).encode() if older_than(cursor.boundary_id, True) else None
    else:
        query = sa.select(*selected).where(*where)
        start = request.after
        if start is not None:
            bound = id_col <= start.boundary_id if start.inclusive else id_col < start.boundary_id
            query = query.where(bound)
        rows = [dict(r._mapping) for r in conn.execute(query.order_by(id_col.desc()).limit(limit + 1))]
        more_older = len(rows) > limit
        rows = rows[:limit]
        after = Cursor(rows[-1]["id"]).encode() if rows and more_older else None
        if rows:
            before = Cursor(rows[0]["id"]).encode() if newer_than(rows[0]["id"]) else None
        elif start is not None and newer_than(start.boundary_id, True):
            before = Cursor(start.boundary_id, True).encode()
        else:
            before = None
    total = None
    if request.with_total:
        total = conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
    return Page(rows, after, before, total)
