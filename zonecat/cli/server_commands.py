"""Commands that run zonecat itself: ``serve``, ``worker`` and ``migrate`` (the rest of the CLI is an HTTP client)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
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


def settle_heap() -> None:
    """Move everything built at start-up (modules, the app, its OpenAPI document, caches) out of the garbage
    collector's sight. A full collection walks every tracked object while holding the GIL: with ~130,000 start-up
    objects that took 70-170 ms on a 2-core VM, during which the process answered nothing, health checks included."""
    gc.collect()
    gc.freeze()


def migrate_apart(settings: Settings) -> None:
    """Migrate the SQLite database in a forked child that exits afterwards. Alembic, Mako and the revisions take
    ~15 MB that a process keeps for its whole life once imported, and the serving process needs none of it. Call
    only before this process opens the database, with no other thread running: the child inherits no connection.
    A failure there is logged, and ``boot()`` migrates again in this process and reports what it meets."""
    from zonecat.store.database import Database
    from zonecat.worker.process import die_with_parent, exit_after

    parent = os.getpid()

    def migration() -> None:
        die_with_parent(parent)  # a killed serve must not leave a migration running for its restart to meet
        db = Database(settings.effective_database_url)
        try:
            db.migrate()
        finally:
            db.dispose()

    try:
        pid = os.fork()
    except OSError as exc:
        log.warning("could not fork to migrate; migrating in this process", extra={"error": str(exc)})
        return
    if pid == 0:
        # A failure is logged there, where its root cause is known (a half-applied migration can fail differently
        # when repeated); the parent repeats the migration and reports what it meets.
        exit_after(migration, "migration failed")
    os.waitpid(pid, 0)


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
@click.option("--workers", "worker_threads", type=int, default=1, show_default=True, help="Tasks run at once.")
@click.option(
    "--in-process-worker",
    is_flag=True,
    help="Run tasks in threads of the API process instead of a worker process (they then share its GIL: slow "
    "bindings delay requests).",
)
def serve(host: str | None, port: int | None, no_worker: bool, worker_threads: int, in_process_worker: bool) -> None:
    """Serve the HTTP API and run tasks in a worker process of its own (SQLite in ZONECAT_DATA_DIR by default)."""
    from zonecat.engine.bootstrap import boot
    from zonecat.worker.process import WorkerProcess, can_fork
    from zonecat.worker.worker import Worker

    settings = _settings(host=host, port=port)
    logs.configure(settings.log_level)
    concurrency = max(1, worker_threads)
    threaded = not no_worker and in_process_worker
    worker_process = WorkerProcess(concurrency) if not no_worker and not threaded else None
    forking = can_fork()  # asked once: both forks below are made while this is the only thread
    if worker_process is not None and forking:
        # Now, before the API's modules are imported and before boot() opens the database: the worker process
        # shares the memory of every module imported so far (the engine's, the store's, their libraries') instead
        # of a copy of its own, and starts without importing anything. It runs once start() is called below.
        settle_heap()
        worker_process.fork(_forked_worker(settings, concurrency))
    if settings.effective_database_url.startswith("sqlite") and forking:
        migrate_apart(settings)

    import uvicorn

    from zonecat.api.app import create_app
    from zonecat.api.context import AppContext, RateLimiter

    with database_errors():
        # The forked worker process has not run yet: a lease under its pid is a former process's (pid reuse).
        waiting = [pid] if worker_process is not None and (pid := worker_process.pid) is not None else []
        db, secret = when_database_answers(lambda: boot(settings, waiting), settings.database_wait_seconds)
    if secret is not None:
        click.echo(
            "\nzonecat created an organization-admin token. It is shown only this once:\n\n"
            f"    export ZONECAT_TOKEN={secret}\n",
            err=True,
        )
    workers = [Worker(db, settings) for _ in range(concurrency)] if threaded else []
    threads = [threading.Thread(target=w.run, name=f"worker-{i}", daemon=True) for i, w in enumerate(workers)]

    def wake() -> None:
        if worker_process is not None:
            worker_process.wake()
        for worker in workers:
            worker.wake()

    ctx = AppContext(
        db=db,
        settings=settings,
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        wake_worker=wake,
    )
    if worker_process is not None:
        worker_process.start()  # opens the database while the app is built below
    app = create_app(ctx)
    app.openapi()  # built now, while nothing is served, and frozen with the rest
    settle_heap()
    listener = _listener(db, wake) if workers else None
    for thread in threads:
        thread.start()
    if worker_process is not None:
        # Answer no request before tasks can run: a 202 is then followed by its task's progress at once.
        worker_process.wait_ready(settings.database_wait_seconds)

    def stop_workers() -> None:
        """Stop taking tasks; each worker finishes its current entity step and hands its task back."""
        ctx.shutting_down.set()
        if listener is not None:
            listener.stop()
        if worker_process is not None:
            worker_process.stop()
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
@click.option("--wake-fd", type=int, default=None, hidden=True, help="Pipe from `serve`: a byte wakes the workers.")
@click.option("--parent-pid", type=int, default=None, hidden=True, help="The `serve` process this one dies with.")
@click.option("--ready-fd", type=int, default=None, hidden=True, help="Pipe to `serve`: a byte once tasks can run.")
def worker(concurrency: int, wake_fd: int | None, parent_pid: int | None, ready_fd: int | None) -> None:
    """Run catalog tasks (no API) until SIGTERM."""
    from zonecat.worker.process import die_with_parent

    if parent_pid is not None:
        die_with_parent(parent_pid)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    run_worker(settings, concurrency, wake_fd, ready_fd, started_by_serve=parent_pid is not None)


def run_worker(
    settings: Settings, concurrency: int, wake_fd: int | None, ready_fd: int | None, started_by_serve: bool
) -> None:
    """The worker process's life: open the database, run ``concurrency`` workers until SIGTERM or SIGINT."""
    from zonecat.engine.bootstrap import open_database, open_secret_box
    from zonecat.store.database import Database
    from zonecat.worker.process import listen_to_parent, report_ready
    from zonecat.worker.worker import Worker

    with database_errors():
        if started_by_serve:
            # `serve` has just migrated or checked the schema: skip Alembic (most of the start-up).
            db = Database(settings.effective_database_url, secret_box=open_secret_box(settings, create=False))
        else:
            db = when_database_answers(lambda: open_database(settings), settings.database_wait_seconds)
    workers = [Worker(db, settings) for _ in range(max(1, concurrency))]
    threads = [threading.Thread(target=w.run, name=f"worker-{i}") for i, w in enumerate(workers)]

    def wake() -> None:
        for item in workers:
            item.wake()

    listener = _listener(db, wake)
    if wake_fd is not None:
        listen_to_parent(wake_fd, wake)
    settle_heap()

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
    if ready_fd is not None:
        report_ready(ready_fd)
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
    db.dispose()


def _forked_worker(settings: Settings, concurrency: int) -> Callable[[int, int], None]:
    """What the forked worker process runs (see ``WorkerProcess.fork``)."""

    def main(wake_fd: int, ready_fd: int) -> None:
        try:
            run_worker(settings, concurrency, wake_fd, ready_fd, started_by_serve=True)
        except click.ClickException as exc:
            exc.show()
            raise SystemExit(exc.exit_code) from exc

    return main


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
@click.option("--zone", "zone_ref", default=None, help="Check one zone only (its id or name).")
@click.option("--lease-grace", type=float, default=0.0, show_default=True, help="Seconds a lease may be overdue.")
def check(zone_ref: str | None, lease_grace: float) -> None:
    """Verify the entity store against installs and task journals; print every violation, exit 1 if any.

    Reads the database of ZONECAT_DATABASE_URL / ZONECAT_DATA_DIR directly (like `migrate`), so it also works
    while the API is down.
    """
    from zonecat.clock import now_ms
    from zonecat.engine.bootstrap import open_secret_box
    from zonecat.engine.invariants import check as check_invariants
    from zonecat.store import zones as zone_store
    from zonecat.store.database import Database

    settings = Settings.from_env()
    with database_errors():
        # The key of the deployment if there is one; `check` never creates a key file.
        db = Database(settings.effective_database_url, secret_box=open_secret_box(settings, create=False))
    try:
        with database_errors():
            db.ensure_current()
            with db.read() as conn:
                zone_id = (
                    None if zone_ref is None else _zone_to_check(zone_store.zone_ids_matching(conn, zone_ref), zone_ref)
                )
                violations = check_invariants(conn, now_ms(), zone_id, int(lease_grace * 1000))
    finally:
        db.dispose()
    for violation in violations:
        click.echo(str(violation))
    if violations:
        click.echo(f"{len(violations)} violation(s)", err=True)
        sys.exit(1)
    click.echo("no violations")


def _zone_to_check(matches: list[str], ref: str) -> str:
    """The one zone ``--zone`` names; a usage error for none (a check of nothing would print "no violations") or for
    a name that several organizations use. A zone id is taken as given, even of a zone that no longer exists:
    what such a zone left behind is what ``check`` reports (``zone-gone``)."""
    from zonecat.ids import looks_like_id

    if not matches and looks_like_id(ref, "zon"):
        return ref
    if not matches:
        raise click.BadParameter(f"no zone has the id or name {ref!r}", param_hint="--zone")
    if len(matches) > 1:
        raise click.BadParameter(
            f"{len(matches)} zones are named {ref!r} (in different organizations): give the zone's id",
            param_hint="--zone",
        )
    return matches[0]


SERVER_COMMANDS: list[click.Command] = [serve, worker, migrate, check]
