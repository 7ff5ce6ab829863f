"""The procrastinate app B4 compares zonecat's workers with: one no-op task on the database named by
``BENCH_PROCRASTINATE_DSN``. Its workers run as ``python -m procrastinate --app bench.procrastinate_app.app worker``.
"""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_DSN", "")))


@app.task(name="noop")
async def noop() -> None:
    """Does nothing: what is measured is procrastinate's own defer → fetch → run → finish cycle."""
