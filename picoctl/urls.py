"""The URLs picoctl fetches releases from, checked before any request is made.

A URL from an operator, a webhook or a meta.json is refused here in words (BadInput) when no request
could be made of it: another scheme, no host, a port outside 1-65535, control characters or spaces.

Where a fetch may go after the URL it was given (a redirect, or the artifact_url a fetched meta.json
names) is `check_hop`'s rule: at most MAX_REDIRECTS redirects, never from https to http, and only to
a public address or to one of the same kind as the named URL's (`address_kind`). A hub told to fetch
from a public host is never led by that host to its own loopback, its private network or a
link-local metadata service; one told to fetch from loopback or a private network may stay there.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from .errors import BadInput

SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
PUBLIC = "public"


def is_url(source: str) -> bool:
    """Whether `source` is meant as a URL (http:// or https://) rather than a path."""
    return source.lower().startswith(tuple(f"{s}://" for s in SCHEMES))


def is_plain(text: str) -> bool:
    """Whether `text` holds no space and no control character (C0 or DEL), as a URL must: the rule
    for a URL here and for the artifact and artifact_url a meta.json names (release.check_meta)."""
    return not any(ord(c) <= 32 or ord(c) == 127 for c in text)


def check_url(url: str, what: str) -> str:
    """`url` when a request can be made of it, else BadInput naming `what`."""
    shown = f"{what} {url[:120]!r}"
    if not is_plain(url):
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


def address_kind(host: str) -> str:
    """The kind of address `host` (a name or an IP literal) stands for: `public`, `loopback`,
    `link-local`, `private` (RFC 1918, unique local, shared, documentation ranges) or `reserved`
    (unspecified, multicast, reserved). A name with several addresses takes its first non-public one;
    a name that does not resolve is `public` (the request itself then fails)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return PUBLIC
    kinds = [_kind(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos]
    return next((k for k in kinds if k != PUBLIC), PUBLIC)


def _kind(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_unspecified or addr.is_multicast or addr.is_reserved:  # `::1` is in reserved ::/8 too
        return "reserved"
    return PUBLIC if addr.is_global else "private"


def check_hop(named: str, url: str, what: str) -> None:
    """BadInput naming `what` unless a fetch that started at the URL `named` may go on to `url`."""
    check_url(url, what)
    if urlsplit(named).scheme.lower() == "https" and urlsplit(url).scheme.lower() == "http":
        raise BadInput(f"{what} {url[:120]!r}: leads from https to plain http")
    kind = address_kind(httpx.URL(url).host)
    if kind != PUBLIC and kind != address_kind(httpx.URL(named).host):
        raise BadInput(f"{what} {url[:120]!r}: leads to a {kind} address from {named[:120]!r}, which is not one")


def too_many_redirects(url: str, exc: httpx.TooManyRedirects) -> str:
    """The one line for a fetch of `url` stopped after MAX_REDIRECTS redirects, naming the next hop."""
    return f"{url[:120]}: more than {MAX_REDIRECTS} redirects (the next to {str(exc.request.url)[:120]!r})"
