"""``zonecat task``: show, list and follow catalog tasks; ``follow`` is shared with install/uninstall."""

from __future__ import annotations

from typing import Any

import click

from zonecat.cli import render
from zonecat.cli.context import State, json_option, limit_option, pass_state, seg, timeout_option, zone_option
from zonecat.cli.progress import watch_task

__all__ = ["follow", "print_task", "task"]


def follow(state: State, zone_id: str, task_id: str, *, as_json: bool, timeout: float) -> dict[str, Any]:
    """Follow a task to its end, then print the outcome; a failed task exits non-zero."""
    out = render.console()
    try:
        done = watch_task(
            state.client,
            zone_id,
            task_id,
            out=out,
            live=False if as_json else None,
            timeout=timeout or None,
            quiet=as_json,
        )
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; the task goes on: zonecat task watch {task_id} --zone {zone_id}", err=True)
        raise SystemExit(130) from None
    if done.get("status") == "failed":
        if as_json:
            render.print_json(done)
        raise click.ClickException(f"task {done['id']} failed: {done.get('error_message') or 'no reason given'}")
    install_id = done.get("install_id")
    if done.get("operation") == "create" and install_id:
        install = state.client.get(f"/zones/{seg(zone_id)}/installs/{seg(install_id)}")
        if as_json:
            render.print_json(install)
            return done
        click.echo(f"install {install_id} is {install.get('status')}")
        outputs = install.get("outputs") or {}
        if outputs:
            render.print_pairs(sorted(outputs.items()), title="outputs")
        return done
    if as_json:
        render.print_json(done)
        return done
    click.echo(f"task {done['id']} {done.get('status')}: install {install_id} {done.get('operation')}d")
    render.print_warnings(done.get("warnings") or [])
    return done


def _print_links(task_body: dict[str, Any]) -> None:
    links = task_body.get("links") or []
    if links:
        render.print_table(
            ["entity", "type", "action", "href"],
            (
                [
                    (link.get("properties") or {}).get("local_name"),
                    (link.get("properties") or {}).get("type"),
                    link.get("rel"),
                    link.get("href"),
                ]
                for link in links
            ),
            title="entities",
        )


def print_task(task_body: dict[str, Any]) -> None:
    """A task as a key/value table, its entity links and its warnings."""
    render.print_pairs(
        [
            ("id", task_body.get("id")),
            ("operation", task_body.get("operation")),
            ("status", task_body.get("status")),
            ("install", task_body.get("install_id")),
            ("package", task_body.get("package_slug") or task_body.get("package_id")),
            ("version", task_body.get("package_version")),
            ("error", task_body.get("error_message")),
            ("created", task_body.get("created_at")),
            ("updated", task_body.get("updated_at")),
        ]
    )
    _print_links(task_body)
    render.print_warnings(task_body.get("warnings") or [])


@click.group()
def task() -> None:
    """Catalog tasks: the asynchronous create and delete operations of installs."""


def _task_path(zone_id: str, task_id: str) -> str:
    return f"/zones/{seg(zone_id)}/catalog_tasks/{seg(task_id)}"


@task.command("show")
@click.argument("task_id", metavar="TASK")
@zone_option
@json_option
@pass_state
def show(state: State, task_id: str, zone: str, as_json: bool) -> None:
    """Show a task, whatever its status."""
    body = state.client.get(_task_path(state.zone_id(zone), task_id), params={"redirect": "false"})
    if as_json:
        render.print_json(body)
        return
    print_task(body)


@task.command("watch")
@click.argument("task_id", metavar="TASK")
@zone_option
@timeout_option
@json_option
@pass_state
def watch(state: State, task_id: str, zone: str, timeout: float, as_json: bool) -> None:
    """Follow a task's entity steps live until it completes or fails."""
    follow(state, state.zone_id(zone), task_id, as_json=as_json, timeout=timeout)


@task.command("list")
@zone_option
@click.option("--install", "install_id", default=None, help="Only tasks of this install.")
@click.option(
    "--status",
    type=click.Choice(["pending", "running", "completed", "failed"]),
    default=None,
    help="Only tasks in this status.",
)
@click.option(
    "--operation",
    type=click.Choice(["create", "delete"]),
    default=None,
    help="Only installs (create) or uninstalls (delete).",
)
@limit_option
@json_option
@pass_state
def list_(
    state: State,
    zone: str,
    install_id: str | None,
    status: str | None,
    operation: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the tasks of a zone, newest first."""
    params = {k: v for k, v in {"install_id": install_id, "status": status, "operation": operation}.items() if v}
    body = state.client.list_all(f"/zones/{seg(state.zone_id(zone))}/catalog_tasks", params, limit=limit)
    if as_json:
        render.print_json(body)
        return
    render.print_table(
        ["id", "operation", "status", "install", "package", "created"],
        (
            [
                t["id"],
                t.get("operation"),
                t.get("status"),
                t.get("install_id"),
                t.get("package_slug"),
                t.get("created_at"),
            ]
            for t in body["items"]
        ),
        empty="no tasks",
    )
