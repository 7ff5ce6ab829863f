"""Hostile-input campaign: oversize and malformed bodies, non-UTF-8 bytes, deep nesting, malformed cursors and ids,
manifests with rejected schema keywords, cycles and oversize sizes, a 10,000-entity package, and CEL bindings that
explode (nested comprehensions, giant strings and lists) — thrown at one `zonecat serve` (SQLite) while a
probe process of its own (`healthprobe`) GETs /healthz every 20 ms.

Every case has an expectation: the exact 4xx (`bad_request` / `validation_error`) with a message and the right
`details[].field`, a release refused with the problem at a JSON path, or an install whose task ends `failed` with
an `error_message` naming the entity and the cause. Prints one line per case and the health-check latencies.

Exits non-zero when a case misses its expectation, any response is a 5xx, or a health check failed or took more
than 100 ms. (`make test` runs the quick cases without the timing: no timed assertions in the test suite.)

`python -m tests.campaigns.hostile` (`make hostile`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server

QUIET = {"ZONECAT_LOG_LEVEL": "WARNING"}
HEALTH_INTERVAL = 0.020
HEALTH_TIMEOUT = 2.0
HEALTH_SLOW = 0.100
MIB = 1024 * 1024
TASK_TIMEOUT = 120.0


class Miss(AssertionError):
    """A case did not get what it expected."""


# --------------------------------------------------------------------------------------------------------------
# health monitor


@dataclass
class HealthMonitor:
    """GETs /healthz every ``interval`` seconds from a process of its own (``healthprobe``) until stopped.

    ``checks`` are ``(unix time started, latency seconds)``; ``failures`` the checks that got no 200."""

    url: str
    interval: float = HEALTH_INTERVAL
    max_checks: int = 200_000
    _process: subprocess.Popen[str] | None = None
    _output: Path | None = None

    def start(self) -> None:
        self._output = Path(tempfile.mkstemp(prefix="zonecat-healthz-", suffix=".txt")[1])
        command = [sys.executable, "-m", "tests.campaigns.healthprobe", self.url, str(self.interval)]
        command += [str(HEALTH_TIMEOUT), str(self.max_checks)]
        with self._output.open("w") as output:
            self._process = subprocess.Popen(command, stdout=output, text=True)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=HEALTH_TIMEOUT + 5)

    def _lines(self) -> list[list[str]]:
        if self._output is None or not self._output.exists():
            return []
        lines = self._output.read_text().splitlines()
        return [line.split(" ", 2) for line in lines[:-1]]  # the last line may still be being written

    @property
    def checks(self) -> list[tuple[float, float]]:
        return [(float(parts[0]), float(parts[1])) for parts in self._lines() if parts[0] != "#"]

    @property
    def latencies(self) -> list[float]:
        return [latency for _, latency in self.checks]

    @property
    def failures(self) -> list[str]:
        found = []
        for parts in self._lines():
            if parts[0] == "#":
                found.append(" ".join(parts[1:]))
            elif parts[2] not in ("200", "0"):
                found.append(f"/healthz answered {parts[2]}")
        return found

    def worst_between(self, since: float, until: float) -> float:
        """The slowest check that started or ended in [since, until] (unix times), in seconds."""
        return max((lat for at, lat in self.checks if at <= until and at + lat >= since), default=0.0)

    def summary(self) -> dict[str, float]:
        values = sorted(self.latencies)
        if not values:
            return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "over_100ms": 0, "failures": 0}
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return {
            "count": len(values),
            "p50_ms": statistics.median(values) * 1000,
            "p99_ms": p99 * 1000,
            "max_ms": values[-1] * 1000,
            "over_100ms": sum(v > HEALTH_SLOW for v in values),
            "failures": len(self.failures),
        }


# --------------------------------------------------------------------------------------------------------------
# context and expectations


class Context:
    """A zone on the server, an HTTP client that records every 5xx, and helpers for the cases."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.server_errors: list[str] = []
        self.http = self._client()
        self.zone = server.new_zone()
        self._counter = 0  # names and identifiers unique within the zone

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url,
            headers={"Authorization": f"Bearer {self.server.token}"},
            timeout=60,
            event_hooks={"response": [self._record]},
        )

    def _record(self, response: httpx.Response) -> None:
        if response.status_code >= 500:
            request = response.request
            self.server_errors.append(f"{request.method} {request.url.path[:80]} -> {response.status_code}")

    def close(self) -> None:
        self.http.close()

    def fresh_connection(self) -> None:
        """A new HTTP client, so that a connection the server dropped after one case cannot fail the next."""
        self.http.close()
        self.http = self._client()

    def unique(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix} {self._counter} {time.monotonic_ns()}"

    # -- packages and installs

    def create_package(self, manifest: dict[str, Any]) -> httpx.Response:
        return self.http.post(f"/zones/{self.zone}/packages", json={"manifest": manifest})

    def release(self, manifest: dict[str, Any]) -> httpx.Response:
        """Create the package and release its draft; the first refusal (or the release's 201) is returned."""
        created = self.create_package(manifest)
        if created.status_code != 201:
            return created
        return self.http.post(f"/zones/{self.zone}/packages/{created.json()['id']}/versions", json={})

    def released(self, manifest: dict[str, Any]) -> str:
        response = self.release(manifest)
        if response.status_code != 201:
            raise Miss(f"release of a valid manifest: {response.status_code} {short(response.text)}")
        return str(response.json()["package_id"])

    def install(self, package_id: str, inputs: dict[str, Any] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"package_id": package_id}
        if inputs is not None:
            body["inputs"] = inputs
        return self.http.post(f"/zones/{self.zone}/installs", json=body)

    def wait_task(self, task_id: str, timeout: float = TASK_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.http.get(f"/zones/{self.zone}/catalog_tasks/{task_id}", params={"redirect": "false"})
            body = response.json()
            if response.status_code == 200 and body["status"] in ("completed", "failed"):
                return dict(body)
            time.sleep(0.05)
        raise Miss(f"task {task_id} still unfinished after {timeout:.0f}s")

    def install_fails(self, manifest: dict[str, Any], inputs: dict[str, Any], *needles: str) -> str:
        """Release ``manifest``, install it with ``inputs``: the task must end ``failed`` and its ``error_message``
        contain every needle (case-insensitive)."""
        package_id = self.released(manifest)
        response = self.install(package_id, inputs)
        if response.status_code != 202:
            raise Miss(f"install: expected 202, got {response.status_code} {short(response.text)}")
        task = self.wait_task(response.json()["id"])
        message = task.get("error_message") or ""
        if task["status"] != "failed":
            raise Miss(f"task ended {task['status']}, expected failed")
        missing = [needle for needle in needles if needle.lower() not in message.lower()]
        if missing:
            raise Miss(f"error_message lacks {missing}: {short(message)}")
        return f"task failed: {short(message, 110)}"


def short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def expect_error(response: httpx.Response, status: int, code: str, field: str | None = None, *needles: str) -> str:
    """``response`` is the error object with ``status``/``code``, a non-empty message containing every needle, and
    (with ``field``) a ``details`` entry whose field is ``field`` or starts with ``field`` followed by ``.``/``[``."""
    try:
        body = response.json()
    except ValueError:
        raise Miss(f"expected {status} {code}, got {response.status_code} with a non-JSON body") from None
    if response.status_code != status or not isinstance(body, dict) or body.get("code") != code:
        raise Miss(f"expected {status} {code}, got {response.status_code} {short(response.text)}")
    message = str(body.get("message") or "")
    if not message.strip():
        raise Miss(f"{status} {code} without a message")
    details = body.get("details") or []
    text = message + " " + " ".join(str(d.get("message")) for d in details)
    missing = [needle for needle in needles if needle.lower() not in text.lower()]
    if missing:
        raise Miss(f"message lacks {missing}: {short(text)}")
    fields = [str(d.get("field")) for d in details]
    if field is not None and not any(f == field or f.startswith((field + ".", field + "[")) for f in fields):
        raise Miss(f"no details[].field {field!r} in {fields}: {short(message)}")
    shown = f" [{', '.join(fields[:3])}{', …' if len(fields) > 3 else ''}]" if fields else ""
    return f"{status} {code}{shown}: {short(message, 90)}"


# --------------------------------------------------------------------------------------------------------------
# manifests


def secret_entity(identifier: str = "a", name: str = '"n"', extra: str = "") -> dict[str, Any]:
    return {"type": "secret", "bindings": f'{{"identifier": "{identifier}", "name": {name}{extra}}}'}


def manifest(
    ctx: Context,
    entities: dict[str, Any] | None = None,
    input_schema: dict[str, Any] | None = None,
    **more: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "custom",
        "name": ctx.unique("Hostile"),
        "entities": entities if entities is not None else {"only": secret_entity(ctx.unique("id"))},
    }
    if input_schema is not None:
        body["inputs"] = {"schema": input_schema}
    body.update(more)
    return body


def big_manifest(ctx: Context, count: int) -> dict[str, Any]:
    """``count`` independent secrets with the shortest bindings that still make each identifier unique."""
    ctx._counter += 1
    tag = f"m{ctx._counter}"  # short: 10,000 of these bindings must fit in the 1 MiB body
    entities = {
        f"e{i}": {"type": "secret", "bindings": f'{{"identifier":"{tag}-{i}","name":"n"}}'} for i in range(count)
    }
    return {"kind": "custom", "name": ctx.unique("Big"), "entities": entities}


STRING_INPUT = {"type": "object", "properties": {"s": {"type": "string"}}, "required": ["s"]}
LIST_INPUT = {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "string"}}}}


# --------------------------------------------------------------------------------------------------------------
# cases


@dataclass
class Case:
    name: str
    run: Callable[[Context], str]
    slow: bool = False  # left out of the `make test` version
    xfail: str | None = None  # a known server bug: the case is kept, pytest marks it xfail(strict=True)


CASES: list[Case] = []


def case(name: str, *, slow: bool = False, xfail: str | None = None) -> Callable[[Callable[[Context], str]], Any]:
    def register(function: Callable[[Context], str]) -> Callable[[Context], str]:
        CASES.append(Case(name, function, slow, xfail))
        return function

    return register


def raw_post(ctx: Context, path: str, content: bytes | Iterator[bytes], **headers: str) -> httpx.Response:
    return ctx.http.post(path, content=content, headers={"Content-Type": "application/json", **headers})


# -- bodies and bytes


@case("body over 1 MiB (Content-Length)")
def _oversize_body(ctx: Context) -> str:
    payload = json.dumps({"name": "x" * (MIB + 100)}).encode()
    return expect_error(raw_post(ctx, "/zones", payload), 400, "bad_request", "body", "larger than")


@case("body over 1 MiB (chunked, no Content-Length)")
def _oversize_chunked(ctx: Context) -> str:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    return expect_error(raw_post(ctx, "/zones", chunks()), 400, "bad_request", "body", "larger than")


@case("manifest over 1 MiB in a body over 1 MiB")
def _oversize_manifest(ctx: Context) -> str:
    body = manifest(ctx, description="d" * (MIB + 10))
    return expect_error(ctx.create_package(body), 400, "bad_request", "body", "larger than")


@case("JSON nested 100,000 deep")
def _deep_nesting(ctx: Context) -> str:
    payload = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    return expect_error(raw_post(ctx, "/zones", payload), 400, "bad_request", "body", "nested")


@case("JSON nested 100,000 deep in a manifest")
def _deep_manifest(ctx: Context) -> str:
    payload = b'{"manifest": {"kind": "custom", "properties": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001 + b"}"
    return expect_error(raw_post(ctx, f"/zones/{ctx.zone}/packages", payload), 400, "bad_request", "body", "nested")


@case("malformed JSON")
def _malformed(ctx: Context) -> str:
    return expect_error(raw_post(ctx, "/zones", b'{"name": "a",,}'), 400, "bad_request", "body")


@case("truncated JSON")
def _truncated(ctx: Context) -> str:
    return expect_error(raw_post(ctx, f"/zones/{ctx.zone}/installs", b'{"package_id": "'), 400, "bad_request", "body")


@case("non-UTF-8 bytes in a body")
def _non_utf8_body(ctx: Context) -> str:
    return expect_error(raw_post(ctx, "/zones", b'{"name": "\xff\xfe\xc3("}'), 400, "bad_request", "body")


@case("lone surrogate escape in a zone name")
def _surrogate(ctx: Context) -> str:
    response = raw_post(ctx, "/zones", b'{"name": "a\\ud800b"}')
    return expect_error(response, 400, "bad_request", "name")


@case("lone surrogate escape in a manifest")
def _surrogate_manifest(ctx: Context) -> str:
    payload = json.dumps({"manifest": manifest(ctx, description="x\udfffy")}).encode()
    response = raw_post(ctx, f"/zones/{ctx.zone}/packages", payload)
    return expect_error(response, 400, "bad_request", "manifest.description")


@case("lone surrogate escape in install inputs")
def _surrogate_inputs(ctx: Context) -> str:
    package_id = ctx.released(manifest(ctx, input_schema=STRING_INPUT))
    payload = json.dumps({"package_id": package_id, "inputs": {"s": "x\ud800"}}).encode()
    response = raw_post(ctx, f"/zones/{ctx.zone}/installs", payload)
    return expect_error(response, 400, "bad_request", "inputs.s")


@case("NUL character in a body")
def _nul(ctx: Context) -> str:
    return expect_error(raw_post(ctx, "/zones", b'{"name": "a\\u0000b"}'), 400, "bad_request", "name", "NUL")


@case("NaN / Infinity in a body")
def _nan(ctx: Context) -> str:
    return expect_error(raw_post(ctx, "/zones", b'{"name": "a", "x": NaN}'), 400, "bad_request", "body")


@case("body is a JSON array")
def _array_body(ctx: Context) -> str:
    return expect_error(raw_post(ctx, f"/zones/{ctx.zone}/installs", b"[1, 2, 3]"), 400, "bad_request", "body")


@case("install body with 200,000-item list")
def _huge_list_body(ctx: Context) -> str:
    payload = json.dumps({"package_id": "x", "inputs": {"xs": ["a"] * 200_000}}).encode()
    return expect_error(raw_post(ctx, f"/zones/{ctx.zone}/installs", payload), 400, "bad_request", "inputs", "larger")


# -- cursors, limits and ids


@case("cursor that is not a cursor")
def _bad_cursor(ctx: Context) -> str:
    response = ctx.http.get(f"/zones/{ctx.zone}/installs", params={"after": "not-a-cursor!!"})
    return expect_error(response, 400, "bad_request", "after")


@case("cursor of 256 characters")
def _long_cursor(ctx: Context) -> str:
    response = ctx.http.get(f"/zones/{ctx.zone}/catalog_tasks", params={"before": "A" * 256})
    return expect_error(response, 400, "bad_request", "before")


@case("cursor of 100 KB")
def _huge_cursor(ctx: Context) -> str:
    response = ctx.http.get(f"/zones/{ctx.zone}/entities", params={"after": "A" * 8000})
    if response.status_code in (414, 431):  # the HTTP server refuses the request line itself: still a clear 4xx
        return f"{response.status_code} from the HTTP server"
    return expect_error(response, 400, "bad_request", "after")


@case("cursor with non-UTF-8 percent-encoding")
def _non_utf8_cursor(ctx: Context) -> str:
    response = ctx.http.get(httpx.URL(f"{ctx.server.url}/zones/{ctx.zone}/packages?after=%FF%FEabc"))
    return expect_error(response, 400, "bad_request", "after")


@case("cursor with a NUL byte")
def _nul_cursor(ctx: Context) -> str:
    response = ctx.http.get(httpx.URL(f"{ctx.server.url}/zones/{ctx.zone}/packages?after=abc%00def"))
    return expect_error(response, 400, "bad_request", "url", "NUL")


@case("both after and before")
def _after_and_before(ctx: Context) -> str:
    response = ctx.http.get(f"/zones/{ctx.zone}/packages", params={"after": "a", "before": "b"})
    return expect_error(response, 400, "bad_request", None)


@case("limit 0, 101, -1, 1e9, abc")
def _limits(ctx: Context) -> str:
    outcomes = []
    for limit in ("0", "101", "-1", "1000000000", "abc", "1.5"):
        response = ctx.http.get(f"/zones/{ctx.zone}/installs", params={"limit": limit})
        outcomes.append(expect_error(response, 400, "bad_request", "limit"))
    return outcomes[0] + f" (x{len(outcomes)})"


@case("id of 10,000 characters")
def _long_id(ctx: Context) -> str:
    response = ctx.http.get(f"/zones/{ctx.zone}/installs/{'A' * 10_000}")
    return expect_error(response, 404, "not_found", None)


@case("ids with NUL, non-UTF-8, unicode, dots")
def _odd_ids(ctx: Context) -> str:
    outcomes = [expect_error(ctx.http.get(f"/zones/{ctx.zone}/packages/a%00b"), 400, "bad_request", "url", "NUL")]
    for raw in ("%FF%FE", "%C3%A9t%C3%A9", "..%2F..%2Fzones", "%F0%9F%92%A9" * 10, "'%20OR%201=1--"):
        response = ctx.http.get(httpx.URL(f"{ctx.server.url}/zones/{ctx.zone}/packages/{raw}"))
        outcomes.append(expect_error(response, 404, "not_found", None))
    zone = ctx.http.get(httpx.URL(f"{ctx.server.url}/zones/%FF%FE/installs"))
    outcomes.append(expect_error(zone, 404, "not_found", None))
    zone = ctx.http.get(httpx.URL(f"{ctx.server.url}/zones/%FF%00/installs"))
    outcomes.append(expect_error(zone, 400, "bad_request", "url", "NUL"))
    return outcomes[0] + f" (x{len(outcomes)})"


@case("install of a version that is not a number")
def _bad_version(ctx: Context) -> str:
    package_id = ctx.released(manifest(ctx))
    body = {"package_id": package_id, "version": "9" * 400}
    response = ctx.http.post(f"/zones/{ctx.zone}/installs", json=body)
    return expect_error(response, 400, "validation_error", "version")


@case("install of a package id that is 5,000 characters")
def _install_long_package_id(ctx: Context) -> str:
    response = ctx.http.post(f"/zones/{ctx.zone}/installs", json={"package_id": "P" * 5000})
    if response.status_code == 404:
        return expect_error(response, 404, "not_found", None)
    return expect_error(response, 400, "validation_error", "package_id")


# -- manifests refused at release


@case("schema with rejected keywords (allOf, $ref, patternProperties, not)")
def _rejected_keywords(ctx: Context) -> str:
    schema = {
        "type": "object",
        "allOf": [{"type": "object"}],
        "properties": {"a": {"$ref": "#/x"}, "b": {"type": "string", "not": {"const": "x"}}},
        "patternProperties": {"^x": {"type": "string"}},
    }
    response = ctx.release(manifest(ctx, input_schema=schema))
    outcome = expect_error(response, 400, "validation_error", "manifest.inputs.schema")
    fields = " ".join(d["field"] for d in response.json()["details"])
    for keyword in ("allOf", "$ref", "not", "patternProperties"):
        if keyword not in fields:
            raise Miss(f"{keyword} not reported: {fields}")
    return outcome


@case("schema with an unknown keyword")
def _unknown_keyword(ctx: Context) -> str:
    schema = {"type": "object", "properties": {"a": {"type": "string", "x-hostile": True}}}
    response = ctx.release(manifest(ctx, input_schema=schema))
    return expect_error(response, 400, "validation_error", "manifest.inputs.schema.properties.a")


@case("schema nested 28 levels deep")
def _deep_schema(ctx: Context) -> str:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(28):  # 56 levels of JSON: under the body's 64-level limit with the manifest around it
        schema = {"type": "object", "properties": {"a": schema}}
    response = ctx.release(manifest(ctx, input_schema=schema))
    if response.status_code == 201:
        return "201 released (a deep but legal schema)"
    return expect_error(response, 400, "validation_error", "manifest")


@case("entity cycle a -> b -> c -> a")
def _cycle(ctx: Context) -> str:
    entities = {
        "a": secret_entity("a", extra=', "metadata": {"x": entities.c.outputs.id}'),
        "b": secret_entity("b", extra=', "metadata": {"x": entities.a.outputs.id}'),
        "c": secret_entity("c", extra=', "metadata": {"x": entities.b.outputs.id}'),
    }
    response = ctx.release(manifest(ctx, entities))
    return expect_error(response, 400, "validation_error", "manifest.entities", "cycle")


@case("entity cycle through links (#href)")
def _link_cycle(ctx: Context) -> str:
    entities = {
        "a": {**secret_entity("a"), "links": [{"rel": "x", "href": "#b"}]},
        "b": {**secret_entity("b"), "links": [{"rel": "x", "href": "#a"}]},
    }
    response = ctx.release(manifest(ctx, entities))
    return expect_error(response, 400, "validation_error", "manifest.entities", "cycle")


@case("self-reference")
def _self_cycle(ctx: Context) -> str:
    entities = {"a": secret_entity("a", extra=', "metadata": {"x": entities.a.outputs.id}')}
    response = ctx.release(manifest(ctx, entities))
    return expect_error(response, 400, "validation_error", "manifest.entities", "cycle")


@case("reference to an unknown entity, unknown type, unknown kind")
def _unknowns(ctx: Context) -> str:
    entities = {
        "a": secret_entity("a", extra=', "metadata": {"x": entities.ghost.outputs.id}'),
        "b": {"type": "spaceship", "bindings": '{"identifier": "b", "name": "b"}'},
    }
    body = manifest(ctx, entities)
    body["kind"] = "no-such-kind"
    response = ctx.release(body)
    outcome = expect_error(response, 400, "validation_error", "manifest")
    fields = " ".join(d["field"] for d in response.json()["details"])
    for expected in ("manifest.kind", "manifest.entities.a", "manifest.entities.b"):
        if expected not in fields:
            raise Miss(f"{expected} not reported: {fields}")
    return outcome


@case("CEL that does not parse")
def _cel_syntax(ctx: Context) -> str:
    entities = {"a": {"type": "secret", "bindings": '{"identifier": "a", "name": ((("}'}}
    response = ctx.release(manifest(ctx, entities))
    return expect_error(response, 400, "validation_error", "manifest.entities.a.bindings")


@case("CEL expression over 10 KiB")
def _cel_too_long(ctx: Context) -> str:
    entities = {"a": {"type": "secret", "bindings": '{"identifier": "a", "name": "' + "x" * 11_000 + '"}'}}
    response = ctx.release(manifest(ctx, entities))
    return expect_error(response, 400, "validation_error", "manifest.entities.a.bindings", "limit")


@case("CEL nested 500 parentheses deep")
def _cel_deep_parens(ctx: Context) -> str:
    entities = {
        "a": {"type": "secret", "bindings": '{"identifier": "a", "name": ' + "(" * 500 + '"n"' + ")" * 500 + "}"}
    }
    response = ctx.release(manifest(ctx, entities))
    return expect_error(response, 400, "validation_error", "manifest.entities.a.bindings")


@case("CEL replace() refused")
def _cel_replace(ctx: Context) -> str:
    entities = {"a": secret_entity("a", name='"aaaa".replace("a", "aaaaaaaaaa").replace("a", "aaaaaaaaaa")')}
    response = ctx.release(manifest(ctx, entities))
    return expect_error(response, 400, "validation_error", "manifest.entities.a.bindings", "replace")


@case("output bindings that are not a map of the output schema's keys")
def _bad_outputs(ctx: Context) -> str:
    body = manifest(ctx)
    body["outputs"] = {"schema": {"type": "object", "properties": {"x": {"type": "string"}}}, "bindings": '"x"'}
    response = ctx.release(body)
    return expect_error(response, 400, "validation_error", "manifest.outputs")


@case("10,001 entities")
def _too_many_entities(ctx: Context) -> str:
    body = big_manifest(ctx, 10_001)
    response = ctx.release(body)
    return expect_error(response, 400, "validation_error", "manifest.entities", "10000")


@case("manifest with 5,000 problems at once")
def _many_problems(ctx: Context) -> str:
    entities = {f"e{i}": {"type": "nope", "bindings": "((("} for i in range(5000)}
    response = ctx.release(manifest(ctx, entities))
    outcome = expect_error(response, 400, "validation_error", "manifest.entities")
    return outcome + f" ({len(response.json()['details'])} details)"


# -- inputs


@case("inputs over 64 KiB")
def _inputs_too_big(ctx: Context) -> str:
    package_id = ctx.released(manifest(ctx, input_schema=STRING_INPUT))
    response = ctx.install(package_id, {"s": "x" * (70 * 1024)})
    return expect_error(response, 400, "bad_request", "inputs", "larger than")


@case("inputs that violate the schema (type, missing, extra depth)")
def _inputs_invalid(ctx: Context) -> str:
    schema = {
        "type": "object",
        "required": ["s", "n"],
        "properties": {"s": {"type": "string", "maxLength": 3}, "n": {"type": "integer"}},
    }
    package_id = ctx.released(manifest(ctx, input_schema=schema))
    response = ctx.install(package_id, {"s": "toolong", "n": {"a": [[[[1]]]]}})
    outcome = expect_error(response, 400, "validation_error", "inputs.s")
    expect_error(response, 400, "validation_error", "inputs.n")
    return outcome


@case("inputs that are not an object")
def _inputs_not_object(ctx: Context) -> str:
    package_id = ctx.released(manifest(ctx))
    response = ctx.install(package_id, ["a"])  # type: ignore[arg-type]
    if response.status_code == 400 and response.json().get("code") == "bad_request":
        return expect_error(response, 400, "bad_request", "inputs")
    return expect_error(response, 400, "validation_error", "inputs")


@case("input list of 5,000 items into a binding (1,000-item activation cap)")
def _huge_input_list(ctx: Context) -> str:
    entities = {"a": secret_entity(ctx.unique("id"), extra=', "metadata": {"n": size(entities.inputs.xs)}')}
    body = manifest(ctx, entities, input_schema=LIST_INPUT)
    body["inputs"]["bindings"] = '{"xs": pkg.inputs.xs}'
    return ctx.install_fails(body, {"xs": ["a"] * 5000}, "1000")


# -- CEL that explodes at install time


@case("CEL: five nested comprehensions (iteration budget)")
def _cel_nested(ctx: Context) -> str:
    ten = "[0,1,2,3,4,5,6,7,8,9]"
    expression = f"{ten}.map(a, {ten}.map(b, {ten}.map(c, {ten}.map(d, {ten}.map(e, a+b+c+d+e)))))"
    entities = {"boom": secret_entity(ctx.unique("id"), extra=f', "metadata": {{"x": {expression}}}')}
    return ctx.install_fails(manifest(ctx, entities), {}, "boom", "budget")


@case("CEL: result over 1 MiB (list of a 60 KB string x 20)")
def _cel_big_result(ctx: Context) -> str:
    items = ", ".join(["entities.inputs.s"] * 20)
    entities = {"wide": secret_entity(ctx.unique("id"), extra=f', "metadata": {{"x": [{items}]}}')}
    body = manifest(ctx, entities, input_schema=STRING_INPUT)
    body["inputs"]["bindings"] = '{"s": pkg.inputs.s}'
    return ctx.install_fails(body, {"s": "x" * 60_000}, "wide", "larger than")


@case("CEL: giant string by concatenation (60 KB x 20)")
def _cel_giant_string(ctx: Context) -> str:
    name = " + ".join(["entities.inputs.s"] * 20)
    entities = {"long": secret_entity(ctx.unique("id"), name=name)}
    body = manifest(ctx, entities, input_schema=STRING_INPUT)
    body["inputs"]["bindings"] = '{"s": pkg.inputs.s}'
    return ctx.install_fails(body, {"s": "y" * 60_000}, "long", "larger than")


@case("CEL: doubling string inside a comprehension")
def _cel_doubling(ctx: Context) -> str:
    # 13 doublings of a 60 KB string would be 480 MB; the result cap or the budget must stop it.
    expression = "[0,1,2,3,4,5,6,7,8,9,10,11,12].map(i, entities.inputs.s + entities.inputs.s)"
    entities = {"dbl": secret_entity(ctx.unique("id"), extra=f', "metadata": {{"x": {expression}}}')}
    body = manifest(ctx, entities, input_schema=STRING_INPUT)
    body["inputs"]["bindings"] = '{"s": pkg.inputs.s}'
    return ctx.install_fails(body, {"s": "z" * 60_000}, "dbl", "larger than")


@case("CEL: input bindings explode (budget, before any entity)")
def _cel_input_bindings(ctx: Context) -> str:
    ten = "[0,1,2,3,4,5,6,7,8,9]"
    body = manifest(ctx, input_schema={"type": "object"})
    body["inputs"]["bindings"] = f'{{"x": {ten}.map(a, {ten}.map(b, {ten}.map(c, {ten}.map(d, {ten}.map(e, 1)))))}}'
    return ctx.install_fails(body, {}, "input bindings", "budget")


@case("CEL: division by zero and a missing key name the entity")
def _cel_runtime_errors(ctx: Context) -> str:
    entities = {"div": secret_entity(ctx.unique("id"), extra=', "metadata": {"x": 1 / (size(entities.inputs) - 0)}')}
    body = manifest(ctx, entities)
    outcome = ctx.install_fails(body, {}, "div")
    entities = {"miss": secret_entity(ctx.unique("id"), name="entities.inputs.nothing_here")}
    ctx.install_fails(manifest(ctx, entities), {}, "miss", "nothing_here")
    return outcome


@case("CEL: binding result violates the entity type (name is a list)")
def _cel_wrong_type(ctx: Context) -> str:
    entities = {"typed": secret_entity(ctx.unique("id"), name="[1, 2, 3]")}
    return ctx.install_fails(manifest(ctx, entities), {}, "typed", "name")


GIL_STALL = (
    "cel-expr-python evaluates while holding the GIL, so one long evaluation inside the iteration budget "
    "(string concatenation in nested comprehensions; this case: ~0.3-0.5 s in the server, 2 s / 300 MB when the "
    "same binding is evaluated directly; bindings.py documents 13 s / 2.7 GB for a larger one) freezes the whole "
    "`zonecat serve` process, API included: /healthz stalls for the duration"
)


@case("CEL: concatenation in nested comprehensions within the budget (slow evaluation)")
def _cel_slow_within_budget(ctx: Context) -> str:
    """The residual risk bindings.py documents: the task fails clearly, but the evaluation holds the GIL (see the
    health column of `make hostile`; GIL_STALL)."""
    ten, hundred = ",".join(map(str, range(10))), ",".join(map(str, range(100)))
    concatenated = "+".join(["s"] * 10)
    expression = f"[entities.inputs.s].map(s, [{ten}].map(a, [{hundred}].map(b, {concatenated})))"
    entities = {"slow": secret_entity(ctx.unique("id"), extra=f', "metadata": {{"x": {expression}}}')}
    body = manifest(ctx, entities, input_schema=STRING_INPUT)
    body["inputs"]["bindings"] = '{"s": pkg.inputs.s}'
    return ctx.install_fails(body, {"s": "q" * 5000}, "slow", "larger than")


# -- scale


@case("10,000-entity manifest: release and install", slow=True)
def _ten_thousand(ctx: Context) -> str:
    body = big_manifest(ctx, 10_000)
    size = len(json.dumps({"manifest": body}).encode())
    if size > MIB:
        raise Miss(f"the test manifest is {size} bytes; it must fit in 1 MiB")
    started = time.monotonic()
    package_id = ctx.released(body)
    released = time.monotonic() - started
    response = ctx.install(package_id, {})
    if response.status_code != 202:
        raise Miss(f"install: expected 202, got {response.status_code} {short(response.text)}")
    task = ctx.wait_task(response.json()["id"], timeout=600)
    if task["status"] != "completed":
        raise Miss(f"task ended {task['status']}: {short(task.get('error_message') or '')}")
    installed = time.monotonic() - started - released
    return f"completed ({size // 1024} KiB body; release {released:.1f}s, install {installed:.1f}s)"


@case("2,000-entity manifest: release and install")
def _two_thousand(ctx: Context) -> str:
    package_id = ctx.released(big_manifest(ctx, 2000))
    response = ctx.install(package_id, {})
    if response.status_code != 202:
        raise Miss(f"install: expected 202, got {response.status_code} {short(response.text)}")
    task = ctx.wait_task(response.json()["id"], timeout=300)
    if task["status"] != "completed":
        raise Miss(f"task ended {task['status']}: {short(task.get('error_message') or '')}")
    return "completed"


# --------------------------------------------------------------------------------------------------------------
# runner


@dataclass
class Result:
    name: str
    ok: bool
    outcome: str
    seconds: float
    xfail: str | None
    health_max_ms: float = 0.0


def run_case(ctx: Context, item: Case, monitor: HealthMonitor | None = None) -> Result:
    ctx.fresh_connection()
    since = time.time()
    before = len(ctx.server_errors)
    started = time.monotonic()
    try:
        outcome = item.run(ctx)
        ok = True
    except Miss as exc:
        outcome, ok = f"MISS: {exc}", False
    except httpx.HTTPError as exc:
        outcome, ok = f"MISS: {type(exc).__name__}: {short(str(exc))}", False
    seconds = time.monotonic() - started
    if len(ctx.server_errors) > before:
        outcome, ok = f"5xx: {ctx.server_errors[before:]} / {outcome}", False
    result = Result(item.name, ok, outcome, seconds, item.xfail)
    if monitor is not None:
        until = time.time()
        time.sleep(HEALTH_INTERVAL * 3)  # let a check that started during the case finish
        result.health_max_ms = monitor.worst_between(since, until) * 1000
    return result


def run_campaign(data_dir: Path, include_slow: bool = True) -> tuple[list[Result], HealthMonitor]:
    server = Server(data_dir, env=QUIET)
    monitor = HealthMonitor(server.url)
    try:
        server.start()
        ctx = Context(server)
        monitor.start()
        results = []
        for item in CASES:
            if item.slow and not include_slow:
                continue
            result = run_case(ctx, item, monitor)
            print(
                f"{'ok  ' if result.ok else 'MISS'} {result.seconds:6.2f}s  {result.name}: {result.outcome}", flush=True
            )
            results.append(result)
        ctx.close()
        return results, monitor
    finally:
        monitor.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the slowest cases (the 10,000-entity install)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="zonecat-hostile-"))
    print(f"hostile campaign: data in {directory}", flush=True)
    results, monitor = run_campaign(directory, include_slow=not args.quick)
    width = max(len(r.name) for r in results)
    print()
    print(f"{'case':<{width}}  {'time':>7}  {'healthz max':>11}  outcome")
    for r in results:
        mark = "" if r.ok else "  <-- MISS" + (" (known bug, xfail in test_hostile.py)" if r.xfail else "")
        slow = " (>100 ms)" if r.health_max_ms > HEALTH_SLOW * 1000 else ""
        health = f"{r.health_max_ms:8.1f} ms"
        print(f"{r.name:<{width}}  {r.seconds:6.2f}s  {health}  {r.outcome}{mark}{slow}")
    health = monitor.summary()
    print()
    print(
        f"healthz: {health['count']} checks, p50 {health['p50_ms']:.1f} ms, p99 {health['p99_ms']:.1f} ms, "
        f"max {health['max_ms']:.1f} ms, {health['over_100ms']} over 100 ms, {health['failures']} failed"
    )
    for failure in monitor.failures[:10]:
        print("  healthz: " + failure)
    misses = [r for r in results if not r.ok]
    too_slow = health["max_ms"] > HEALTH_SLOW * 1000
    if too_slow:
        print(f"healthz took {health['max_ms']:.0f} ms at worst: over {HEALTH_SLOW * 1000:.0f} ms")
    print(f"{len(results) - len(misses)}/{len(results)} cases met their expectation")
    sys.exit(1 if misses or monitor.failures or too_slow else 0)


if __name__ == "__main__":
    main()
