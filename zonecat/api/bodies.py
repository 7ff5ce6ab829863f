"""Reading request bodies with the contract's errors (malformed JSON, too large, not UTF-8)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from zonecat import errors

# Bodies larger than this are checked and parsed in the thread pool: the depth scan is a Python loop over every
# character (a 1 MiB manifest takes ~100 ms), which would stall every other request if run on the event loop.
PARSE_INLINE_BYTES = 16 * 1024


async def json_body(request: Request, max_bytes: int, *, required: bool = True) -> Any:
    """The parsed JSON body; ``None`` for an empty body when not ``required``."""
    raw = await body_bytes(request, max_bytes)
    if len(raw) > PARSE_INLINE_BYTES:
        return await run_in_threadpool(parse_json_body, raw, required)
    return parse_json_body(raw, required)


async def body_bytes(request: Request, max_bytes: int) -> bytes:
    """The request body, unparsed (for ``parse_json_body`` later); 400 past ``max_bytes``."""
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > max_bytes:
            raise errors.BadRequest(
                f"the request body is larger than {max_bytes} bytes",
                [errors.Detail("body", f"larger than {max_bytes} bytes", "bad_request")],
            )
    return bytes(raw)


def parse_json_body(raw: bytes, required: bool = True) -> Any:
    """Decode, depth-check and parse a request body with the contract's errors."""
    if not raw.strip():
        if required:
            raise errors.BadRequest("a JSON body is required", [errors.Detail("body", "is empty", "bad_request")])
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.BadRequest(
            "the request body is not valid UTF-8", [errors.Detail("body", str(exc), "bad_request")]
        ) from exc
    _check_depth(text)
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise errors.BadRequest(
            "the request body is nested too deeply", [errors.Detail("body", "nested too deeply", "bad_request")]
        ) from exc
    except json.JSONDecodeError as exc:
        raise errors.BadRequest(
            "the request body is not valid JSON",
            [errors.Detail("body", f"{exc.msg} at line {exc.lineno} column {exc.colno}", "bad_request")],
        ) from exc
    except ValueError as exc:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise errors.BadRequest(
            "the request body holds a number too long to read", [errors.Detail("body", str(exc), "bad_request")]
        ) from exc
    if "\\u0000" in text or _SURROGATE_ESCAPE.search(text):
        _reject_unstorable(value, "body")
    return value


# A \uD800-\uDFFF escape: as a pair it decodes to one character, alone it leaves a surrogate in the string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _unstorable(text: str) -> str | None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    return "a NUL character (\\u0000)" if found.group() == "\x00" else "a lone UTF-16 surrogate"


def _reject_unstorable(value: Any, at: str) -> None:
    """Refuse NUL characters and lone surrogates in strings and keys: neither can be stored as text (PostgreSQL
    refuses NUL, UTF-8 cannot encode a lone surrogate), and no name, identifier or secret needs one."""
    stack: list[tuple[Any, str]] = [(value, at)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            what = _unstorable(item)
            if what is not None:
                raise errors.BadRequest(
                    f"the request body contains {what} in a string",
                    [errors.Detail(path, f"contains {what}", "bad_request")],
                )
        elif isinstance(item, dict):
            for key, sub in item.items():
                what = _unstorable(key)
                if what is not None:
                    raise errors.BadRequest(
                        f"the request body contains {what} in a key",
                        [errors.Detail(path, f"a key contains {what}", "bad_request")],
                    )
                stack.append((sub, f"{path}.{key}" if path != "body" else key))
        elif isinstance(item, list):
            stack.extend((sub, f"{path}[{index}]") for index, sub in enumerate(item))


MAX_DEPTH = 64


def _reject_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259); Python's parser would accept them and no reply could
    carry them back."""
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise json.JSONDecodeError(f"{text} is out of range", text, 0)
    return value


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` before parsing, so no later recursive walk can overflow."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise errors.BadRequest(
                    f"the request body is nested deeper than {MAX_DEPTH} levels",
                    [errors.Detail("body", f"nested deeper than {MAX_DEPTH} levels", "bad_request")],
                )
        elif char in "]}":
            depth -= 1


def require_object(value: Any, what: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.BadRequest(
            f"the {what} must be a JSON object", [errors.Detail(what, "must be an object", "bad_request")]
        )
    return value
