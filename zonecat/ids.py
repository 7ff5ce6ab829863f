"""Ids: 26 characters, sortable by creation time, self-describing (``ins_01jd…``).

A 3-letter prefix and ``_``, 10 Crockford base32 characters of Unix milliseconds, 12 of randomness. Inside one
process ids of one prefix are strictly increasing even within one millisecond (the random part is incremented),
so ordering by id equals ordering by creation time with the id as tie-break.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_CHARS = 12
_RANDOM_LIMIT = 32**_RANDOM_CHARS

PREFIXES = frozenset({"zon", "pkg", "ver", "drf", "ins", "tsk", "ent", "tok", "req"})

_lock = threading.Lock()
_last: dict[str, tuple[int, int]] = {}
# A forked child (serve's worker process) must not continue its parent's sequence within the same millisecond: both
# would hand out the same next id. It starts afresh, with randomness of its own.
os.register_at_fork(after_in_child=_last.clear)


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str, now_ms: int | None = None) -> str:
    """A new id such as ``ins_01jd3k5q7x8m2n4p6r8t0v2w``."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        last_ms, last_random = _last.get(prefix, (-1, 0))
        if millis <= last_ms:
            millis, random_part = last_ms, last_random + 1
            if random_part >= _RANDOM_LIMIT:  # practically unreachable; move to the next millisecond
                millis, random_part = last_ms + 1, secrets.randbelow(_RANDOM_LIMIT // 2)
        else:
            # Half the space leaves room to increment within one millisecond.
            random_part = secrets.randbelow(_RANDOM_LIMIT // 2)
        _last[prefix] = (millis, random_part)
    return f"{prefix}_{_encode(millis, 10)}{_encode(random_part, _RANDOM_CHARS)}"


def millis_of(identifier: str) -> int:
    """The creation time (Unix milliseconds) encoded in an id."""
    value = 0
    for char in identifier[4:14]:
        value = value * 32 + _ALPHABET.index(char)
    return value


def looks_like_id(value: str, prefix: str) -> bool:
    """True when ``value`` has the shape of an id with ``prefix``."""
    return len(value) == 26 and value.startswith(prefix + "_") and all(char in _ALPHABET for char in value[4:])
