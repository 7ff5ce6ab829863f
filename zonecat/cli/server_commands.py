"""Commands that run zonecat itself: ``serve``, ``worker`` and ``migrate`` (the rest of the CLI is an HTTP client)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from zonecat import logs
from zonecat.settings import Settings

if TYPE_CHECKING:
    from zonecat.store.database import Database
    from zonecat.worker.wakeup import Listener

log = logging.getLogger("zonecat.server")


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """A database that is unreachable or not migrated ends the command with one clear line, not a traceback."""
    import sqlalchemy as sa

    from zonecat.store.database import SchemaBehind
    from zonecat.store.secrets import SecretError

    try:
        yield
    except (SchemaBehind, SecretError) as exc:
        raise click.ClickException(exc.message) from exc
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise click.ClickException(f"cannot connect to the database: {reason}") from exc


T = TypeVar("T")


def when_database_answers(open_it: Callable[[], T], wait_seconds: float) -> T:
    """Call ``open_it``, retrying while the database is unreachable for up to ``wait_seconds`` (a process started
    together with its database, or during a database restart, waits instead of dying)."""
    import sqlalchemy as sa

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return open_it()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("waiting for the database", extra={"error": type(exc.orig or exc).__name__})
            time.sleep(1.0)


def _settings(**overrides: Any) -> Settings:
    settings = Settings.from_env()
    changes = {key: value for key, value in overrides.items() if value is not None}
    return settings.with_changes(**changes) if changes else settings


def _listener(db: Database, wake: Callable[[], None]) -> Listener | None:
    """On PostgreSQL, a LISTEN thread that wakes the workers as soon as a task is enqueued anywhere."""
    if db.is_sqlite:
        return None
    from zonecat.worker.wakeup import Listener, conninfo_of

    listener = Listener(conninfo_of(db.engine.url.render_as_string(hide_password=False)), wake)
    listener.start()
    return listener


@click.command()
@click.option("--host", default=None, help="Interface to listen on (ZONECAT_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (ZONECAT_PORT, default 8080).")
@click.option("--no-worker", is_flag=True, help="Serve the API only; separate `zonecat worker` processes run tasks.")
@click.option("--workers", "worker_threads", type=int, default=1, show_default=True, help="Worker threads in-process.")
def serve(host: str | None, port: int | None, no_worker: bool, worker_threads: int) -> None:
    """Serve the HTTP API with an in-process worker (SQLite in ZONECAT_DATA_DIR by default)."""
    import uvicorn

    from zonecat.api.app import create_app
    from zonecat.api.context import AppContext, RateLimiter
    from zonecat.engine.bootstrap import boot
    from zonecat.worker.worker import Worker

    settings = _settings(host=host, port=port)
    logs.configure(settings.log_level)
    with database_errors():
        db, secret = when_database_answers(lambda: boot(settings), settings.database_wait_seconds)
    if secret is not None:
        click.echo(
            "\nzonecat created an organization-admin token. It is shown only this once:\n\n"
            f"    export ZONECAT_TOKEN={secret}\n",
            err=True,
        )
    workers = [] if no_worker else [Worker(db, settings) for _ in range(max(1, worker_threads))]
    threads = [threading.Thread(target=w.run, name=f"worker-{i}", daemon=True) for i, w in enumerate(workers)]

    def wake() -> None:
        for worker in workers:
            worker.wake()

    ctx = AppContext(
        db=db,
        settings=settings,
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        wake_worker=wake,
    )
    app = create_app(ctx)
    listener = _listener(db, wake) if workers else None
    for thread in threads:
        thread.start()

    def stop_workers() -> None:
        """Stop taking tasks; each worker finishes its current entity step and hands its task back."""
        ctx.shutting_down.set()
        if listener is not None:
            listener.stop()
        for item in workers:
            item.stop()
        for thread in threads:
            thread.join(timeout=30)

    class Server(uvicorn.Server):
        # uvicorn re-raises SIGTERM/SIGINT once run() returns, which kills the process before any code after it
        # runs: the workers are stopped inside the shutdown sequence itself.
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            await asyncio.to_thread(stop_workers)
            log.info("stopped")

    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False, timeout_graceful_shutdown=10
    )
    log.info(
        "serving", extra={"host": settings.host, "port": settings.port, "database": db.engine.url.render_as_string()}
    )
    try:
        Server(config).run()
    finally:
        stop_workers()  # also when run() returned on its own (e.g. the port was taken)
        db.dispose()


@click.command()
@click.option("--concurrency", type=int, default=1, show_default=True, help="Tasks run at once by this process.")
def worker(concurrency: int) -> None:
    """Run catalog tasks (no API) until SIGTERM."""
    from zonecat.engine.bootstrap import open_database
    from zonecat.worker.worker import Worker

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    with database_errors():
        db = when_database_answers(lambda: open_database(settings), settings.database_wait_seconds)
    workers = [Worker(db, settings) for _ in range(max(1, concurrency))]
    threads = [threading.Thread(target=w.run, name=f"worker-{i}") for i, w in enumerate(workers)]

    def wake() -> None:
        for item in workers:
            item.wake()

    listener = _listener(db, wake)

    def stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signum})
        if listener is not None:
            listener.stop()
        for item in workers:
            item.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
    db.dispose()


@click.command()
def migrate() -> None:
    """Apply the database migrations (required on PostgreSQL; automatic on SQLite)."""
    from zonecat.store.database import Database

    settings = Settings.from_env()
    db = Database(settings.effective_database_url)
    with database_errors():
        before, head = db.schema_revision()
        db.migrate()
    click.echo(f"database schema: {before or 'empty'} -> {head}")
    db.dispose()
    sys.exit(0)


@click.command()
@click.option("--zone", "zone_id", default=None, help="Check one zone only (a zone id).")
@click.option("--lease-grace", type=float, default=0.0, show_default=True, help="Seconds a lease may be overdue.")
def check(zone_id: str | None, lease_grace: float) -> None:
    """Verify the entity store against installs and task journals; print every violation, exit 1 if any.

    Reads the database of ZONECAT_DATABASE_URL / ZONECAT_DATA_DIR directly (like `migrate`), so it also works
    while the API is down.
    """
    from zonecat.clock import now_ms
    from zonecat.engine.bootstrap import open_secret_box
    from zonecat.engine.invariants import check as check_invariants
    from zonecat.store.database import Database

    settings = Settings.from_env()
    with database_errors():
        # The key of the deployment if there is one; `check` never creates a key file.
        db = Database(settings.effective_database_url, secret_box=open_secret_box(settings, create=False))
    try:
        with database_errors():
            db.ensure_current()
            with db.read() as conn:
                violations = check_invariants(conn, now_ms(), zone_id, int(lease_grace * 1000))
    finally:
        db.dispose()
    for violation in violations:
        click.echo(str(violation))
    if violations:
        click.echo(f"{len(violations)} violation(s)", err=True)
        sys.exit(1)
    click.echo("no violations")


SERVER_COMMANDS: list[click.Command] = [serve, worker, migrate, check]
