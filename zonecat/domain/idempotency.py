"""Idempotency rules (design §3.4), as pure decisions.

Within 24 hours, the same key from the same organization on the same method and path with the same body replays
the first request's task; the same key with a different body is a conflict; an older record no longer counts.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

WINDOW_MS = 24 * 3600 * 1000
MAX_KEY_LENGTH = 255


class Decision(enum.Enum):
    NEW = "new"  # no usable earlier request: do the work and remember the key
    REPLAY = "replay"  # the same request again: answer with the earlier request's task
    CONFLICT = "conflict"  # the key was used for a different body: refuse (409)


@dataclass(frozen=True)
class Earlier:
    """What is remembered of the first request that used a key (already matched on organization, method, path)."""

    body_sha: str
    task_id: str
    created_at_ms: int


def request_key(headers: Mapping[str, str]) -> str | None:
    """The request's idempotency key: ``Idempotency-Key``, else ``X-Client-Request-ID``; None without either.

    Raises ``ValueError`` for an empty or over-long key."""
    key = headers.get("idempotency-key")
    if key is None:
        key = headers.get("x-client-request-id")
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"idempotency keys are 1 to {MAX_KEY_LENGTH} characters")
    return key


def body_sha(body: object) -> str:
    """Hash of the body's canonical JSON, so key order and whitespace do not make two requests differ."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def decide(earlier: Earlier | None, body_sha_now: str, now_ms: int) -> Decision:
    """What to do with a request that carries a key, given the earlier request recorded under that key."""
    if earlier is None or earlier.created_at_ms < now_ms - WINDOW_MS:
        return Decision.NEW
    if earlier.body_sha != body_sha_now:
        return Decision.CONFLICT
    return Decision.REPLAY
