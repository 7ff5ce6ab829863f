"""A small HTTP client for the zonecat API, shaped for the CLI.

Every write (POST, PUT, PATCH, DELETE) carries an ``X-Client-Request-ID`` (a fresh UUID per logical call); the
client's own retries of that call reuse it, so a retry after a lost response returns the first task instead of
starting a second install (design §3.4). API errors become ``ApiError``, a ``click.ClickException`` that prints
``code: message`` and one ``field: message`` line per detail.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import httpx

__all__ = ["ApiError", "Client", "Page"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Statuses worth another attempt of the same call (with the same request id), for a call that may be repeated
#: whatever the first attempt did (``replayable``).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses that say the server did not carry the call out: worth another attempt of any call. (Not 503: zonecat
#: answers it when the database went away, which may have been after a commit whose answer was lost.)
UNDONE_STATUSES = frozenset({429})
#: The two writes the API makes idempotent by their request id (design §3.4): an install and an uninstall.
_KEYED_WRITE = re.compile(r"/zones/[^/]+/installs(/[^/]+)?")
MAX_RETRIES = 2
MAX_RETRY_DELAY = 5.0
PAGE_SIZE = 100

JSON = Any
Params = Mapping[str, str | int | list[str]]


class ApiError(click.ClickException):
    """An error response of the API, printed as ``code: message`` with its details below."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = dict(body)
        self.code = str(body.get("code") or f"http_{status}")
        self.api_message = str(body.get("message") or "")
        raw_details = body.get("details")
        self.details: list[dict[str, Any]] = [d for d in raw_details or [] if isinstance(d, dict)]
        super().__init__(self._text())

    def _text(self) -> str:
        lines = [f"{self.code}: {self.api_message}"]
        lines += [f"  {d.get('field') or '-'}: {d.get('message', '')}" for d in self.details]
        return "\n".join(lines)


class Page:
    """One page of a list response: its items and its cursors."""

    def __init__(self, body: object) -> None:
        # (A bare array never gets here: ``_decode`` refuses every answer that is not a JSON object.)
        if not isinstance(body, Mapping):
            raise click.ClickException(f"unexpected list response: {body!r:.200}")
        items = body.get("items") or []
        if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
            raise click.ClickException(f"unexpected list response: {body!r:.200}")
        self.items: list[dict[str, Any]] = [dict(item) for item in items]
        pagination = body.get("pagination") or {}
        self.after_cursor: str | None = pagination.get("after_cursor")
        self.before_cursor: str | None = pagination.get("before_cursor")
        self.total_count: int | None = pagination.get("total_count")


class Client:
    """Talks to one zonecat server; ``base_url`` may carry a path prefix (``http://h/api``)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx  # lazily: it is the slowest import of the CLI, and --help needs none of it

        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "zonecat-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, params: Params | None = None) -> JSON:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: JSON = None, *, headers: Mapping[str, str] | None = None) -> JSON:
        return self.request("POST", path, json=body if body is not None else {}, headers=headers)

    def put(self, path: str, body: JSON, *, headers: Mapping[str, str] | None = None) -> JSON:
        return self.request("PUT", path, json=body, headers=headers)

    def delete(self, path: str) -> JSON:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: JSON = None,
        headers: Mapping[str, str] | None = None,
    ) -> JSON:
        """Send one logical call, retrying transient failures with the same request id; return its JSON."""
        import httpx

        send_headers = dict(headers or {})
        if method in WRITE_METHODS:
            send_headers.setdefault("X-Client-Request-ID", str(uuid.uuid4()))
        replay = replayable(method, path)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, params=params, json=json, headers=send_headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                raise click.ClickException(
                    f"cannot connect to the zonecat server at {self.base_url} ({exc}); "
                    "is it running? (set --url or ZONECAT_URL)"
                ) from exc
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.TimeoutException) as exc:
                if not replay:
                    # The request may have reached the server: a second attempt could do it twice (a second
                    # zone, a second token whose secret nobody saw), and the first one's answer is lost.
                    raise click.ClickException(
                        f"{method} {self.base_url}{path}: the connection was lost once the request was sent "
                        f"({type(exc).__name__}); it may have been carried out: check before trying again"
                    ) from exc
                if attempt >= MAX_RETRIES:
                    raise click.ClickException(f"{method} {self.base_url}{path} failed: {exc!r}") from exc
                attempt += 1
                time.sleep(0.5 * attempt)
                continue
            except UnicodeEncodeError as exc:  # an argument that is not text (not UTF-8 in the shell)
                text = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
                raise click.ClickException(
                    f"cannot send {method} {path}: {text!r} in an argument is not valid text (is the terminal UTF-8?)"
                ) from exc
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                raise click.ClickException(f"cannot send {method} {self.base_url}{path}: {exc}") from exc
            retry = RETRY_STATUSES if replay else UNDONE_STATUSES
            if response.status_code in retry and attempt < MAX_RETRIES:
                attempt += 1
                time.sleep(_retry_delay(response, attempt))
                continue
            return _decode(response, self.base_url)

    def pages(self, path: str, params: Params | None = None, *, limit: int | None = None) -> Iterator[Page]:
        """Every page of a list, newest first; stop once ``limit`` items have been seen (all when None)."""
        query: dict[str, str | int | list[str]] = dict(params or {})
        seen = 0
        while True:
            query["limit"] = PAGE_SIZE if limit is None else max(1, min(PAGE_SIZE, limit - seen))
            page = Page(self.get(path, params=query))
            if limit is not None:
                page.items = page.items[: limit - seen]
            seen += len(page.items)
            yield page
            if page.after_cursor is None or not page.items or (limit is not None and seen >= limit):
                return
            query["after"] = page.after_cursor

    def list_all(self, path: str, params: Params | None = None, *, limit: int | None = None) -> JSON:
        """A whole list as one ``{items, pagination}`` body: the items of every page, in order."""
        items: list[dict[str, Any]] = []
        first: Page | None = None
        last: Page | None = None
        for page in self.pages(path, params, limit=limit):
            first = first or page
            last = page
            items += page.items
        pagination: dict[str, Any] = {
            "after_cursor": last.after_cursor if last else None,
            "before_cursor": first.before_cursor if first else None,
        }
        return {"items": items, "pagination": pagination}


def replayable(method: str, path: str) -> bool:
    """Whether a call may be sent again after a lost answer: a read, or a write the API makes idempotent by its
    request id. Any other write (a zone, a token, a package …) may have been carried out the first time."""
    if method == "GET":
        return True
    keyed = _KEYED_WRITE.fullmatch(path.split("?", 1)[0])
    if keyed is None:
        return False
    return (method == "POST" and keyed.group(1) is None) or (method == "DELETE" and keyed.group(1) is not None)


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    header = response.headers.get("Retry-After")
    try:
        delay = float(header) if header is not None else 0.5 * 2**attempt
    except ValueError:
        delay = 0.5 * 2**attempt
    return max(0.0, min(delay, MAX_RETRY_DELAY))


def _decode(response: httpx.Response, base_url: str) -> JSON:
    if response.status_code == 204:
        return None
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
    if response.is_success:
        if not isinstance(body, dict):  # every answer of the API is a JSON object
            kind = response.headers.get("Content-Type") or "no content type"
            raise click.ClickException(
                f"the server at {base_url} did not answer like a zonecat API (HTTP {response.status_code}, {kind}, "
                f"{'no body' if not response.content else 'not a JSON object'}): is --url / ZONECAT_URL right?"
            )
        return body
    if isinstance(body, dict) and "code" in body:
        raise ApiError(response.status_code, body)
    location = response.headers.get("Location")
    text = response.text.strip()[:200] if response.content else response.reason_phrase
    if location:
        text = f"{text} (redirect to {location})".strip()
    raise ApiError(response.status_code, {"code": f"http_{response.status_code}", "message": text})
