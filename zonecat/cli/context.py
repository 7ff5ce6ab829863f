"""What every command shares: the server connection, zone resolution and the common options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import click

from zonecat.cli.client import Client

__all__ = ["State", "json_option", "limit_option", "pass_state", "seg", "timeout_option", "zone_option"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass
class State:
    """The ``--url`` and ``--token`` of this invocation and, once needed, its client."""

    url: str
    token: str | None
    _client: Client | None = field(default=None, repr=False)
    _zones: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(checked_url(self.url), checked_token(self.token))
            click.get_current_context().call_on_close(self._client.close)
        return self._client

    def zone_id(self, zone: str) -> str:
        """A zone id for a zone id or a zone name (names are looked up in ``GET /zones``)."""
        from zonecat.ids import looks_like_id  # a zone id by its form; anything else (even ``zon_test``) is a name

        if looks_like_id(zone, "zon"):
            return zone
        if zone not in self._zones:
            zones = self.client.list_all("/zones")["items"]
            matches = [z["id"] for z in zones if z.get("name") == zone]
            if not matches:
                matches = [z["id"] for z in zones if z.get("id") == zone]
            if not matches:
                raise click.ClickException(f"not_found: no zone named {zone!r}")
            if len(matches) > 1:
                raise click.ClickException(f"several zones are named {zone!r}; use its id ({', '.join(matches)})")
            self._zones[zone] = matches[0]
        return self._zones[zone]


pass_state = click.make_pass_decorator(State)


def checked_url(url: str) -> str:
    """``--url`` / ZONECAT_URL, refused (a usage error) unless it is an http:// or https:// URL with a host."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise click.BadParameter(
            f"{url!r} is not an http:// or https:// URL of a server (e.g. http://127.0.0.1:8080)",
            param_hint="'--url' / ZONECAT_URL",
        )
    return url


def checked_token(token: str | None) -> str | None:
    """``--token`` / ZONECAT_TOKEN without surrounding whitespace (a token file saved with a line end); refused (a
    usage error) if it holds anything but visible ASCII, which an HTTP header cannot carry."""
    if token is None:
        return None
    token = token.strip()
    if not token:
        return None
    if not all("!" <= char <= "~" for char in token):
        raise click.BadParameter(
            "the token holds characters a bearer token cannot (only visible ASCII): a stray space, line end or "
            "non-ASCII letter?",
            param_hint="'--token' / ZONECAT_TOKEN",
        )
    return token


def seg(value: str) -> str:
    """One URL path segment (ids and slugs are plain, but a user may type anything)."""
    return quote(value, safe="")


def zone_option(func: F) -> F:
    return click.option(
        "--zone",
        "-z",
        envvar="ZONECAT_ZONE",
        required=True,
        help="Zone id or name (env ZONECAT_ZONE).",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the raw JSON response.")(func)


def limit_option(func: F) -> F:
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        help="At most this many items (default: page through all).",
    )(func)


def timeout_option(func: F) -> F:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0),
        default=600.0,
        show_default=True,
        help="Stop waiting after this many seconds (0: wait forever).",
    )(func)
