"""B6: one page of 100 tasks (`GET /zones/{zone}/catalog_tasks?limit=100`) at the start, the middle and the end
of a zone's list of 1,000,000 tasks (quick: 100,000), in both directions (``after`` and ``before`` cursors).

The tasks are written straight into the SQLite database of a data directory: `zonecat serve` first makes one real
install and delete through the API, and its rows (install, create and delete task, their events) are the template
that is copied, with fresh ids and times, into 500,000 deleted installs of two completed tasks each. Every row
therefore has the shape zonecat itself writes (the install's encrypted columns are copied as stored). The entities
are gone, as they are for a deleted install.

Pages deep in the list are reached with cursors made by ``zonecat.domain.paging.Cursor(id).encode()`` for the id at
that position (checked first to be exactly what the API hands out), not by walking 5,000 pages. Each page is timed
many times from a client on the same machine; every statement the store issues for the page is explained
(``EXPLAIN QUERY PLAN``) into the figures.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench import api
from bench.report import Check, Outcome, at_most, info
from bench.servers import ZonecatServer, tree_cpu_seconds

MAX_PAGE_MS = 20.0
MAX_FLATNESS = 2.0  # the slowest position's p50 at most this many times the fastest's
PAGE = 100
CHUNK = 50_000  # installs per transaction of the bulk load


def _load(db_path: Path, template_install: str, installs: int) -> list[str]:
    """Copy the template install and its tasks and events ``installs`` times, older than the template.

    Returns the new task ids, oldest first."""
    from zonecat.ids import new_id
    from zonecat.store import schema

    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    install_row = dict(conn.execute("SELECT * FROM installs WHERE id = ?", (template_install,)).fetchone())
    task_rows = [
        dict(r) for r in conn.execute("SELECT * FROM tasks WHERE install_id = ? ORDER BY id", (template_install,))
    ]
    if [t["operation"] for t in task_rows] != ["create", "delete"] or install_row["status"] != "deleted":
        raise RuntimeError(f"unexpected template: install {install_row['status']}, tasks {task_rows}")
    event_rows = {
        t["id"]: [dict(e) for e in conn.execute("SELECT * FROM task_events WHERE task_id = ? ORDER BY seq", (t["id"],))]
        for t in task_rows
    }

    def insert_sql(table: sa.Table, row: dict[str, Any]) -> tuple[str, list[str]]:
        columns = [c.name for c in table.columns]
        missing = set(columns) ^ set(row)
        if missing:
            raise RuntimeError(f"{table.name}: the template's columns differ from zonecat's schema: {missing}")
        return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", columns

    install_sql, install_cols = insert_sql(schema.installs, install_row)
    task_sql, task_cols = insert_sql(schema.tasks, task_rows[0])
    event_sql, event_cols = insert_sql(schema.task_events, event_rows[task_rows[0]["id"]][0])

    first_ms = int(install_row["created_at_ms"]) - installs * 2 - 60_000
    task_ids: list[str] = []
    conn.execute("PRAGMA journal_mode=DELETE")  # a bulk load into a WAL database would write it all twice
    conn.execute("PRAGMA synchronous=OFF")
    try:
        for chunk_start in range(0, installs, CHUNK):
            chunk = range(chunk_start, min(installs, chunk_start + CHUNK))
            install_values, task_values, event_values = [], [], []
            for index in chunk:
                ms = first_ms + index * 2
                install_id = new_id("ins", ms)
                install_values.append(
                    tuple(
                        {"id": install_id, "created_at_ms": ms, "updated_at_ms": ms + 1}.get(c, install_row[c])
                        for c in install_cols
                    )
                )
                for offset, task in enumerate(task_rows):
                    task_ms = ms + offset
                    task_id = new_id("tsk", task_ms)
                    task_ids.append(task_id)
                    changes = {
                        "id": task_id,
                        "install_id": install_id,
                        "created_at_ms": task_ms,
                        "updated_at_ms": task_ms,
                        "run_after_ms": task_ms,
                    }
                    task_values.append(tuple(changes.get(c, task[c]) for c in task_cols))
                    for event in event_rows[task["id"]]:
                        event_changes = {"task_id": task_id, "created_at_ms": task_ms}
                        event_values.append(tuple(event_changes.get(c, event[c]) for c in event_cols))
            conn.execute("BEGIN")
            conn.executemany(install_sql, install_values)
            conn.executemany(task_sql, task_values)
            conn.executemany(event_sql, event_values)
            conn.execute("COMMIT")
    finally:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
    return task_ids


def _time_page(http: httpx.Client, path: str, params: dict[str, Any], expected: list[str], repeats: int) -> list[float]:
    samples = []
    for attempt in range(repeats + 3):
        started = time.perf_counter()
        response = http.get(path, params=params)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        if attempt < 3:  # warm-up, and a check that the page is the one we meant
            got = [item["id"] for item in response.json()["items"]]
            if got != expected:
                raise RuntimeError(f"page {params} returned {got[:2]}…{got[-2:]}, expected {expected[:2]}…")
            continue
        samples.append(elapsed)
    return samples


def _explain(db_path: Path, zone_id: str, cursors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """In-process: the store's time for each page (list alone, and rendered as the API does), and the query plan
    of every distinct statement the listing issues."""
    from zonecat.api import views
    from zonecat.domain.paging import Cursor, PageRequest
    from zonecat.store import tasks as task_store
    from zonecat.store.database import Database

    db = Database(f"sqlite:///{db_path}")
    statements: list[tuple[str, Any]] = []

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def _capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    found: dict[str, Any] = {"store_ms": {}, "worker_poll_ms": {}, "plans": {}}
    try:
        for name, params in cursors.items():
            request = PageRequest(
                limit=PAGE,
                after=Cursor.decode(params["after"], "after") if "after" in params else None,
                before=Cursor.decode(params["before"], "before") if "before" in params else None,
            )
            list_ms, render_ms = [], []
            for _ in range(10):
                with db.read() as conn:
                    started = time.perf_counter()
                    page = task_store.list_tasks(conn, zone_id, request)
                    listed = time.perf_counter()
                    [views.task_view(conn, row) for row in page.items]
                    rendered = time.perf_counter()
                list_ms.append((listed - started) * 1000)
                render_ms.append((rendered - listed) * 1000)
            found["store_ms"][name] = {
                "list_tasks_p50": round(statistics.median(list_ms), 2),
                "task_views_p50": round(statistics.median(render_ms), 2),
            }
        # What an idle worker asks every poll (design: the tasks table is the queue), at this table size.
        from zonecat.clock import now_ms

        for name, poll in (
            ("claim", lambda conn: task_store.claim(conn, "bench-probe", now_ms(), 1)),
            ("next_due_ms", task_store.next_due_ms),
        ):
            with db.read() as conn:  # nothing is due, so the claim only reads; a read transaction is enough
                started = time.perf_counter()
                poll(conn)
                found["worker_poll_ms"][name] = round((time.perf_counter() - started) * 1000, 1)
        seen: dict[str, Any] = {}
        for statement, parameters in statements:
            if statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")) or statement in seen:
                continue
            seen[statement] = parameters
        with db.engine.connect() as conn:
            for statement, parameters in seen.items():
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
                found["plans"][" ".join(statement.split())] = [str(row[-1]) for row in rows]
    finally:
        db.dispose()
    return found


def run(quick: bool) -> Outcome:
    from zonecat.domain.paging import Cursor

    tasks = 100_000 if quick else 1_000_000
    repeats = 20 if quick else 50
    figures: dict[str, Any] = {"tasks": tasks, "page": PAGE, "repeats": repeats}
    data_dir = Path(tempfile.mkdtemp(prefix="zonecat-bench-b6-"))
    try:
        with ZonecatServer(data_dir=data_dir) as server, server.client() as http:
            zone_id = api.create_zone(http)
            package_id = api.chain_package(http, zone_id, 1)
            task_id, install_id = api.install(http, zone_id, package_id, {"run": "b6"})
            api.wait(http, zone_id, task_id)
            api.wait(http, zone_id, api.delete(http, zone_id, install_id))
        started = time.perf_counter()
        synthetic = _load(data_dir / "zonecat.db", install_id, (tasks - 2) // 2)
        figures["load_s"] = round(time.perf_counter() - started, 1)
        figures["database_mb"] = round((data_dir / "zonecat.db").stat().st_size / 1e6)
        started = time.perf_counter()
        with ZonecatServer(data_dir=data_dir) as server, server.client() as http:
            figures["serve_start_s"] = round(time.perf_counter() - started, 2)
            path = f"/zones/{zone_id}/catalog_tasks"
            first = http.get(path, params={"limit": PAGE})
            first.raise_for_status()
            newest = [item["id"] for item in first.json()["items"]]
            ordered = newest[:2] + list(reversed(synthetic))  # the whole list, newest first
            total = len(ordered)
            if newest != ordered[:PAGE]:
                raise RuntimeError("the first page is not the newest 100 tasks")
            if first.json()["pagination"]["after_cursor"] != Cursor(ordered[PAGE - 1]).encode():
                raise RuntimeError("the API's cursor differs from Cursor(id).encode(); cannot construct cursors")
            middle = total // 2

            def cursor(position: int) -> str:
                return Cursor(ordered[position]).encode()

            # name → (query parameters, the ids the page must hold, the position of its first item)
            pages: dict[str, tuple[dict[str, Any], list[str], int]] = {
                "after, start": ({"limit": PAGE}, ordered[:PAGE], 0),
                "after, middle": (
                    {"limit": PAGE, "after": cursor(middle)},
                    ordered[middle + 1 : middle + 1 + PAGE],
                    middle + 1,
                ),
                "after, end": (
                    {"limit": PAGE, "after": cursor(total - PAGE - 1)},
                    ordered[total - PAGE :],
                    total - PAGE,
                ),
                "before, start": ({"limit": PAGE, "before": cursor(PAGE)}, ordered[:PAGE], 0),
                "before, middle": (
                    {"limit": PAGE, "before": cursor(middle)},
                    ordered[middle - PAGE : middle],
                    middle - PAGE,
                ),
                "before, end": (
                    {"limit": PAGE, "before": cursor(total - 1)},
                    ordered[total - 1 - PAGE : total - 1],
                    total - 1 - PAGE,
                ),
            }
            # The server's own CPU use while nobody calls it (its worker polls the tasks table every second).
            before, idle_started = tree_cpu_seconds(server.pid), time.monotonic()
            time.sleep(3)
            figures["idle_server_cpu_pct"] = round(
                (tree_cpu_seconds(server.pid) - before) / (time.monotonic() - idle_started) * 100, 1
            )
            timings = {name: _time_page(http, path, p, ids, repeats) for name, (p, ids, _) in pages.items()}
            figures["total_tasks_in_zone"] = total
            figures["pages"] = {
                name: {
                    "first_item_position": pages[name][2],
                    "p50_ms": round(statistics.median(samples), 2),
                    "max_ms": round(max(samples), 2),
                }
                for name, samples in timings.items()
            }
            params_only = {name: p for name, (p, _, _) in pages.items()}
            figures.update(_explain(data_dir / "zonecat.db", zone_id, params_only))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    checks: list[Check] = [info("bulk load", figures["load_s"], "s", f"{tasks:,} tasks, {figures['database_mb']} MB")]
    for name, page in figures["pages"].items():
        note = f"pos {page['first_item_position']:,}, max {page['max_ms']:.1f} ms"
        checks.append(at_most(f"page of {PAGE}, {name}", page["p50_ms"], "ms", MAX_PAGE_MS, "p50 ≤ 20 ms", note))
    checks.append(
        info(
            "server CPU while idle",
            figures["idle_server_cpu_pct"],
            "%",
            "serve + its worker process, % of one core, 3 s",
        )
    )
    polls = figures.get("worker_poll_ms", {})
    checks.append(info("idle worker poll: claim + next_due_ms", sum(polls.values()), "ms", "in-process, once"))
    p50s = [page["p50_ms"] for page in figures["pages"].values()]
    flatness = max(p50s) / min(p50s)
    figures["slowest_over_fastest_p50"] = round(flatness, 2)
    checks.append(at_most("slowest / fastest page p50", flatness, "x", MAX_FLATNESS, f"≤ {MAX_FLATNESS:g}x (flat)"))
    notes = [
        f"{tasks:,} tasks ({'quick: 1,000,000 → 100,000' if quick else 'full size'}) written directly into SQLite; "
        "middle/end pages use cursors built with zonecat.domain.paging.Cursor(id).encode() (identical to the API's)",
    ]
    return Outcome(figures, checks, notes)
