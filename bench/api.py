"""The HTTP calls the scenarios share: zones, packages, installs, deletes and waiting for a task."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx


def create_zone(http: httpx.Client) -> str:
    response = http.post("/zones", json={"name": f"bench-{uuid.uuid4().hex[:10]}"})
    response.raise_for_status()
    return str(response.json()["id"])


def release(http: httpx.Client, zone_id: str, manifest: dict[str, Any]) -> str:
    """Create a zone package from ``manifest`` and release its first version; the package id."""
    body = json.dumps({"manifest": manifest}, separators=(",", ":")).encode()
    created = http.post(f"/zones/{zone_id}/packages", content=body, headers={"Content-Type": "application/json"})
    created.raise_for_status()
    package_id = str(created.json()["id"])
    http.post(f"/zones/{zone_id}/packages/{package_id}/versions", json={}).raise_for_status()
    return package_id


RUN_SCHEMA = {"type": "object", "properties": {"run": {"type": "string"}}, "required": ["run"]}


def chain_package(http: httpx.Client, zone_id: str, count: int) -> str:
    """A zone package of ``count`` secrets, each depending on the previous one; inputs ``{"run": …}`` make the
    identifiers unique, so one package can be installed many times in one zone."""
    entities: dict[str, Any] = {}
    for index in range(count):
        previous = f', "metadata": {{"after": entities.e{index - 1}.outputs.id}}' if index else ""
        entities[f"e{index}"] = {
            "type": "secret",
            "bindings": f'{{"identifier": "bench-{index}-" + entities.inputs.run, "name": "secret {index}"{previous}}}',
        }
    manifest = {
        "kind": "custom",
        "name": f"bench chain {count} {uuid.uuid4().hex[:6]}",
        "inputs": {"schema": RUN_SCHEMA},
        "entities": entities,
    }
    return release(http, zone_id, manifest)


def compact_chain_package(http: httpx.Client, zone_id: str, count: int) -> str:
    """Like ``chain_package`` but with the shortest bindings that keep the chain (each secret's name is the previous
    secret's id), so that 10,000 entities fit the 1 MiB manifest limit. Installable once per zone.

    Each package's bindings are its own (the identifiers carry a tag of the package): a worker compiles each binding
    source once and keeps the last 2,048, so bindings repeated from an earlier package would install faster than
    those of a package never installed before, which is what every measured install is."""
    tag = uuid.uuid4().hex[:3]
    entities: dict[str, Any] = {}
    for index in range(count):
        name = f"entities.e{index - 1}.outputs.id" if index else '"n"'
        entities[f"e{index}"] = {"type": "secret", "bindings": f'{{"identifier":"{tag}{index}","name":{name}}}'}
    manifest = {"kind": "custom", "name": f"bench compact {count} {uuid.uuid4().hex[:6]}", "entities": entities}
    return release(http, zone_id, manifest)


def install(http: httpx.Client, zone_id: str, package_id: str, inputs: dict[str, Any]) -> tuple[str, str]:
    """POST an install; (task id, install id)."""
    response = http.post(f"/zones/{zone_id}/installs", json={"package_id": package_id, "inputs": inputs})
    response.raise_for_status()
    body = response.json()
    return str(body["id"]), str(body["install_id"])


def delete(http: httpx.Client, zone_id: str, install_id: str) -> str:
    """DELETE an install; the delete task's id."""
    response = http.delete(f"/zones/{zone_id}/installs/{install_id}")
    response.raise_for_status()
    return str(response.json()["id"])


def wait(
    http: httpx.Client, zone_id: str, task_id: str, interval: float = 0.001, timeout: float = 600
) -> dict[str, Any]:
    """Poll the task (``?redirect=false``) until it is completed; raise if it failed or took too long."""
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(f"/zones/{zone_id}/catalog_tasks/{task_id}", params={"redirect": "false"})
        response.raise_for_status()
        body = response.json()
        if body["status"] == "completed":
            return dict(body)
        if body["status"] == "failed":
            raise RuntimeError(f"task {task_id} failed: {body.get('error_message')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} still {body['status']} after {timeout} s")
        time.sleep(interval)
