"""Task bodies already rendered, kept by the key of the task row they were rendered from.

Clients poll a task over and over, and between two of its events nothing in its body changes. A poll still reads the
task row (that is what decides the answer, a 404, a 303 or a 200), but when the row is the one a body was rendered
from (``hot.token_and_task``'s key: every stored value), it answers that body instead of reading the step events and
rendering and encoding them again: about a fifth of a poll's cost.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable


class RenderedTasks:
    """At most ``entries`` bodies of at most ``max_body`` bytes each, ``budget`` bytes in all; the oldest go first.

    Safe to share between the event loop and pool threads: a read is one dict lookup, a store holds a lock."""

    def __init__(self, entries: int = 1024, max_body: int = 16 * 1024, budget: int = 2 * 1024 * 1024) -> None:
        self.entries = entries
        self.max_body = max_body
        self.budget = budget
        self._bodies: dict[Hashable, bytes] = {}
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        return self._bodies.get(key)

    def put(self, key: Hashable, body: bytes) -> None:
        if len(body) > self.max_body:
            return  # a large task's body is rendered each time: keeping it would crowd out many small ones
        with self._lock:
            previous = self._bodies.pop(key, None)
            if previous is not None:
                self._size -= len(previous)
            self._bodies[key] = body
            self._size += len(body)
            while len(self._bodies) > self.entries or self._size > self.budget:
                oldest = next(iter(self._bodies))
                self._size -= len(self._bodies.pop(oldest))

    def __len__(self) -> int:
        return len(self._bodies)

    @property
    def size(self) -> int:
        """The bytes of all bodies kept."""
        return self._size
