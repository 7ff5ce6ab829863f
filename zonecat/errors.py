"""The one error root of zonecat.

Every error the service raises on purpose is a ``ZonecatError``. Each subclass carries the contract's error
``code`` (design §3.3); the HTTP status for a code is decided only in ``zonecat.api.errors``. The docstring of a
class is its default message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detail:
    """One problem inside an error: a JSON path (``field``) and what is wrong there."""

    field: str
    message: str
    code: str = "validation_error"


class ZonecatError(Exception):
    """Something went wrong inside zonecat."""

    code = "internal_error"

    def __init__(self, message: str | None = None, details: list[Detail] | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = message or (self.__doc__ or "").strip()
        self.details = details or []


class ValidationFailed(ZonecatError):
    """The request is valid JSON but its content is not acceptable."""

    code = "validation_error"


class BadRequest(ZonecatError):
    """The request is malformed."""

    code = "bad_request"


class Unauthorized(ZonecatError):
    """A valid bearer token is required."""

    code = "unauthorized"


class Forbidden(ZonecatError):
    """This token may not do that."""

    code = "forbidden"


class NotFound(ZonecatError):
    """The requested object does not exist."""

    code = "not_found"


class Conflict(ZonecatError):
    """The request conflicts with the current state."""

    code = "conflict"


class RateLimited(ZonecatError):
    """Too many requests for this token."""

    code = "rate_limit_exceeded"

    def __init__(self, retry_after_seconds: float, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(ZonecatError):
    """The service cannot answer right now; try again shortly."""

    code = "service_unavailable"


class LeaseLost(ZonecatError):
    """The worker no longer holds the lease of this task; another worker owns it now."""


class StepFailed(ZonecatError):
    """An entity step of a task failed; the task rolls back."""
