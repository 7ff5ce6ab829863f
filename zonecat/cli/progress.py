"""Following a catalog task: poll the task and its events, show each entity step as it happens.

On a terminal the steps are a live rich table (local name, type, action or state, entity id); elsewhere each
event is one printed line, so logs and CI output stay readable. The task is always read with
``?redirect=false`` (a completed task would otherwise answer 303 to its install).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from zonecat.cli.client import Client
from zonecat.cli.context import seg

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = ["Steps", "TaskTimeout", "event_line", "watch_task"]

POLL_INTERVAL = 0.2
TERMINAL = frozenset({"completed", "failed"})
LIVE_TABLE_FRAME = 7  # lines of a live table that are not steps: title, header, rules, borders, one spare


class TaskTimeout(click.ClickException):
    """The task did not finish within the time the user was willing to wait."""


@dataclass
class Step:
    local_name: str
    entity_type: str = ""
    state: str = "pending"
    entity_id: str = ""
    message: str = ""


@dataclass
class Steps:
    """The entity steps seen so far, in the order they started."""

    steps: dict[str, Step] = field(default_factory=dict)

    def apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("kind")
        local = event.get("local_name")
        if kind == "status" or not local:
            return
        step = self.steps.setdefault(str(local), Step(str(local)))
        if event.get("entity_type"):
            step.entity_type = str(event["entity_type"])
        if kind == "step_started":
            step.state = "running"
        elif kind == "step_done":
            step.state = str(event.get("action") or "done")
            if event.get("entity_id"):
                step.entity_id = str(event["entity_id"])
        elif kind == "step_failed":
            step.state = "failed"
            step.message = str(event.get("message") or "")


def event_line(event: Mapping[str, Any], entity_type: str | None = None) -> str:
    """One event as one line of plain text; ``entity_type`` fills in a type the event itself lacks."""
    kind = event.get("kind")
    local = event.get("local_name") or ""
    kind_of = event.get("entity_type") or entity_type or "?"
    if kind == "status":
        line = f"task {event.get('status')}"
        return f"{line}: {event['message']}" if event.get("message") else line
    if kind == "step_started":
        return f"{local} ({kind_of}): started"
    if kind == "step_done":
        line = f"{local} ({kind_of}): {event.get('action') or 'done'}"
        return f"{line} {event['entity_id']}" if event.get("entity_id") else line
    if kind == "step_failed":
        return f"{local}: failed: {event.get('message') or ''}"
    return f"{kind}: {event.get('message') or ''}"


_STATE_STYLE = {
    "running": "yellow",
    "failed": "red",
    "rolled_back": "magenta",
    "created": "green",
    "adopted": "cyan",
    "shared": "cyan",
    "deleted": "green",
    "preserved": "cyan",
}


def _table(task: Mapping[str, Any], steps: Steps, room: int | None = None) -> RenderableType:
    """The task's steps as a table; with ``room``, only its last rows, under one that counts those left out."""
    from rich.markup import escape
    from rich.table import Table

    status = str(task.get("status") or "")
    title = f"{task.get('operation')} {task.get('package_slug') or ''} [{status}] task {task.get('id')}"
    table = Table(title=escape(title), title_justify="left", header_style="bold")
    for column in ("entity", "type", "state", "entity id"):
        table.add_column(column, overflow="fold")
    shown = list(steps.steps.values())
    if room is not None and len(shown) > room:
        left_out = len(shown) - (room - 1)
        shown = shown[left_out:]
        table.add_row(f"… {left_out} earlier steps", "", "", "", style="dim")
    for step in shown:
        state = escape(step.state + (f": {step.message}" if step.message else ""))
        style = _STATE_STYLE.get(step.state)
        table.add_row(
            escape(step.local_name),
            escape(step.entity_type),
            f"[{style}]{state}[/{style}]" if style else state,
            escape(step.entity_id),
        )
    return table


def watch_task(
    client: Client,
    zone_id: str,
    task_id: str,
    *,
    out: Console,
    live: bool | None = None,
    timeout: float | None = None,
    quiet: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Follow a task until it is completed or failed; return its last state.

    ``live`` defaults to whether ``out`` is a terminal; without it each event is one line, on stderr when
    ``quiet`` (so stdout can carry JSON). The events are drained after the task is seen in a final
    state, so every step is shown before this returns.
    """
    live = out.is_terminal if live is None else live
    task_path = f"/zones/{seg(zone_id)}/catalog_tasks/{seg(task_id)}"
    steps = Steps()
    after_seq = 0
    deadline = None if timeout is None else time.monotonic() + timeout

    def poll() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        nonlocal after_seq
        task: dict[str, Any] = client.get(task_path, params={"redirect": "false"})
        events: list[dict[str, Any]] = []
        while True:
            body = client.get(f"{task_path}/events", params={"after_seq": after_seq, "limit": 100})
            batch = list(body.get("items") or [])
            for event in batch:
                after_seq = max(after_seq, int(event.get("seq") or 0))
            events += batch
            if len(batch) < 100:
                return task, events

    def finished(task: Mapping[str, Any]) -> bool:
        if task.get("status") in TERMINAL:
            return True
        if deadline is not None and time.monotonic() > deadline:
            raise TaskTimeout(
                f"task {task_id} is still {task.get('status')} after {timeout:g}s; "
                f"follow it with: zonecat task watch {task_id} --zone {zone_id}"
            )
        return False

    if not live:
        while True:
            task, events = poll()
            for event in events:
                steps.apply(event)
                known = steps.steps.get(str(event.get("local_name")))
                click.echo(event_line(event, known.entity_type if known else None), err=quiet)
            if finished(task):
                return task
            sleep(POLL_INTERVAL)

    from rich.live import Live

    task, events = poll()
    for event in events:
        steps.apply(event)

    def room() -> int:
        # The rows a screen holds under the title, the header and the borders: a live display taller than the
        # screen is cut at its bottom, where the steps in progress are, and stops showing anything new.
        return max(3, out.size.height - LIVE_TABLE_FRAME)

    try:
        with Live(_table(task, steps, room()), console=out, refresh_per_second=10, transient=True) as display:
            while not finished(task):
                sleep(POLL_INTERVAL)
                task, events = poll()
                for event in events:
                    steps.apply(event)
                display.update(_table(task, steps, room()))
    finally:
        # Every step, once, where the live display was: also when a timeout, an error or Ctrl-C ended it.
        out.print(_table(task, steps))
    return task
