"""The URLs picoctl fetches releases from, checked before any request is made.

A URL from an operator, a webhook or a meta.json is refused here in words (BadInput) when no request
could be made of it: another scheme, no host, a port outside 1-65535, control characters or spaces.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from .errors import BadInput

SCHEMES = ("http", "https")


def is_url(source: str) -> bool:
    """Whether `source` is meant as a URL (http:// or https://) rather than a path."""
    return source.lower().startswith(tuple(f"{s}://" for s in SCHEMES))


def check_url(url: str, what: str) -> str:
    """`url` when a request can be made of it, else BadInput naming `what`."""
    shown = f"{what} {url[:120]!r}"
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise BadInput(f"{shown}: a URL holds no spaces or control characters")
    if not is_url(url):
        raise BadInput(f"{shown}: expected an http:// or https:// URL")
    try:
        port = urlsplit(url).port
        host = httpx.URL(url).host
    except (ValueError, httpx.InvalidURL) as exc:
        raise BadInput(f"{shown}: not a valid URL ({exc})") from None
    if not host:
        raise BadInput(f"{shown}: the URL names no host")
    if port is not None and not 0 < port < 65536:
        raise BadInput(f"{shown}: port {port} is outside 1-65535")
    return url
