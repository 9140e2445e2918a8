"""Every route of the hub, enumerated from the Starlette app itself, under bad input of every kind.

A new route is covered without naming it here. Each request (wrong method, no or wrong auth, a body
that is empty, garbage, of the wrong shape, of the wrong content type, too big, not UTF-8; path
parameters with traversal, unicode, NUL or thousands of characters; repeated and garbage query
parameters) must get an answer below 500, a JSON error body with a message when it is refused, no
traceback in the hub's log, and leave the store as it was when it was refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from picoctl.hub.app import create_app
from picoctl.signing import device_mac
from picoctl.sim.local_hub import LocalHub
from test_hub_hostile import WEBHOOK_SECRET, stored, strict_json

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")
BOARD = "gh-01"
MEGA = 1024 * 1024
BODIES: dict[str, bytes] = {
    "empty": b"", "spaces": b"   ", "null": b"null", "list": b"[1, 2]", "string": b'"x"', "number": b"12",
    "true": b"true", "nan": b"NaN", "huge-number": b"1" + b"0" * 400, "not-json": b"{oops", "half": b'{"a": ',
    "not-utf8": b'{"id": "\xff\xfe"}', "nul": b'{"id": "a\\u0000"}', "raw-nul": b"\x00" * 64,
    "surrogate": b'{"id": "\\udc00"}', "deep": b"[" * 20000 + b"]" * 20000,
    "deep-object": b'{"a":' * 5000 + b"1" + b"}" * 5000, "bom": b'\xef\xbb\xbf{"id": "x"}',
    "wrong-types": json.dumps({k: [] for k in ("id", "type", "channel", "url", "meta_url", "target", "version",
                                               "stages", "actor", "kind", "reason", "seconds", "counter")}).encode(),
    "string-1mb": json.dumps({"id": "a" * (MEGA - 16)}).encode(),
    "over-cap": b'{"id": "' + b"a" * (2 * MEGA) + b'"}',
}
PARAMS = {
    "traversal": "..%2F..%2F..%2Fetc%2Fpasswd", "dots": "%2E%2E", "unicode": "%C3%A9%E2%82%AC", "nul": "a%00b",
    "long": "a" * 4000, "space": "a%20b", "backslash": "..%5C..%5Cx", "percent": "%25", "emoji": "%F0%9F%92%A9",
}
QUERIES = ("limit=1&limit=x", "after=%00", "limit=%FF", "%zz=1", "limit=" + "9" * 400, "device=%00&kind=%ED%A0%80",
           "target=" + "a" * 4000, "&&&==&", "after=-0", "limit=0x1")


CONTENT_TYPES = ("application/json", "text/plain; charset=latin-1", "multipart/form-data; boundary=x",
                 "application/x-www-form-urlencoded")


@dataclass
class Site:
    hub: LocalHub
    key: str  # the board's device key
    http: httpx.Client

    def signed(self, body: bytes) -> dict[str, str]:
        """Headers of a board request whose MAC is right (so its body is what gets judged)."""
        return {"X-Picoctl-Device": BOARD, "X-Picoctl-Mac": device_mac(self.key, body)}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    h = LocalHub.create(tmp_path_factory.mktemp("routes") / "site")
    h.set_webhook_secret(WEBHOOK_SECRET)
    try:
        h.start()
        with httpx.Client(base_url=h.url, timeout=30) as c:
            yield Site(h, h.register(BOARD), c)
    finally:
        h.close()


def _routes() -> list[Route]:
    """The routes of a hub app built here (its own throwaway site: the served hub holds its store's lock)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="picoctl-routes-") as folder:
        return [r for r in create_app(LocalHub.create(Path(folder) / "site").cfg).routes if isinstance(r, Route)]


ROUTES = _routes()


def _fill(route: Route, value: str | None = None) -> str:
    """The route's path with each parameter filled: a plausible value, or `value` (raw, already quoted)."""
    plausible = {"id": BOARD, "sha256": "0" * 64, "target": "picow", "version": "1.0.0", "action": "halt"}

    def one(m: re.Match[str]) -> str:
        name, _, kind = m.group(1).partition(":")
        if value is not None and not kind:  # a typed parameter (rowid) refuses bad values by not matching
            return value
        return "1" if kind == "rowid" else plausible.get(name, "x")
    return re.sub(r"\{([^}]+)\}", one, route.path)


def _kind(route: Route) -> str:
    if route.path.startswith("/api/v1/webhook"):
        return "webhook"
    if route.path.startswith("/api/v1/"):
        return "operator"
    return "device" if "POST" in (route.methods or ()) else "open"


def _send(site: Site, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request; an event stream is closed once its head is in."""
    with site.http.stream(method, path, content=body, headers=headers or {}) as r:
        kind = r.headers.get("content-type", "")
        return r.status_code, kind, b"" if kind.startswith("text/event-stream") else r.read()


def _bearer(site: Site) -> dict[str, str]:
    return {"Authorization": f"Bearer {site.hub.token}"}


def _auth(site: Site, route: Route, body: bytes) -> dict[str, str]:
    kind = _kind(route)
    if kind == "operator":
        return _bearer(site)
    if kind == "device":
        return site.signed(body)
    if kind == "webhook":
        import hmac

        return {"X-Hub-Signature-256": "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    return {}


def _check(site: Site, what: str, status: int, kind: str, body: bytes, before: dict[str, Any], log_at: int,
           method: str) -> None:
    assert status < 500, (what, status, body[:300])
    if status >= 400:
        assert kind == "application/json", (what, status, kind, body[:300])
        if method != "HEAD":
            error = strict_json(body.decode())["error"]
            assert isinstance(error, str) and error.strip(), (what, body[:300])
        assert stored(site.hub) == before, f"{what}: refused with {status} but the store changed"
    log = site.hub.log_path.read_bytes()[log_at:]
    assert b"Traceback" not in log and b"ERROR" not in log, (what, log[-2000:].decode(errors="replace"))


def _log_size(site: Site) -> int:
    return site.hub.log_path.stat().st_size


def _cases() -> Iterator[tuple[str, Route, str]]:
    for route in ROUTES:
        for method in METHODS:
            yield f"{method} {route.path}", route, method


CASES = list(_cases())


@pytest.mark.parametrize("route,method", [(r, m) for _, r, m in CASES], ids=[c[0] for c in CASES])
def test_every_route_and_method_under_bad_input(site: Site, route: Route, method: str) -> None:
    if site.http.get(f"/api/v1/devices/{BOARD}", headers=_bearer(site)).status_code == 404:
        site.key = site.hub.register(BOARD)  # an earlier DELETE case removed it, as it should
    path = _fill(route)
    allowed = set(route.methods or ())
    others = {m for r in ROUTES if r is not route and _fill(r) == path for m in (r.methods or ())}
    if method not in allowed:
        if method in others:
            return  # the same path serves it through another route: that route's case covers it
        before, at = stored(site.hub), _log_size(site)
        status, kind, body = _send(site, method, path, b"{}", _auth(site, route, b"{}"))
        assert status == 405, (method, path, status, body[:200])
        _check(site, f"{method} {path}", status, kind, body, before, at, method)
        return
    if _kind(route) != "open":
        for headers in ({}, {"Authorization": "Bearer wrong", "X-Picoctl-Device": BOARD, "X-Picoctl-Mac": "0" * 64,
                             "X-Hub-Signature-256": "sha256=" + "0" * 64}):
            before, at = stored(site.hub), _log_size(site)
            status, kind, body = _send(site, method, path, b"{}", headers)
            assert status in (401, 403, 404), (method, path, headers, status, body[:200])
            _check(site, f"{method} {path} unauthenticated", status, kind, body, before, at, method)
    sent = BODIES.items() if method in ("POST", "PUT", "PATCH") else [("none", b"")]
    for name, raw in sent:
        for content_type in CONTENT_TYPES if name in ("empty", "wrong-types", "string") else CONTENT_TYPES[:1]:
            before, at = stored(site.hub), _log_size(site)
            headers = _auth(site, route, raw) | {"Content-Type": content_type}
            status, kind, body = _send(site, method, path, raw, headers)
            _check(site, f"{method} {path} body {name} as {content_type}", status, kind, body, before, at, method)
    for name, value in PARAMS.items():
        filled = _fill(route, value)
        if filled == path:
            break  # no parameter to fill
        before, at = stored(site.hub), _log_size(site)
        status, kind, body = _send(site, method, filled, b"{}", _auth(site, route, b"{}"))
        _check(site, f"{method} {filled[:80]} param {name}", status, kind, body, before, at, method)
    for query in QUERIES:
        before, at = stored(site.hub), _log_size(site)
        status, kind, body = _send(site, method, f"{path}?{query}", b"{}", _auth(site, route, b"{}"))
        _check(site, f"{method} {path}?{query[:60]}", status, kind, body, before, at, method)


DEVICE_FIELDS = ("version", "seq", "uptime_s", "mem_free", "rssi", "phase", "readings", "keys", "boots", "last_error",
                 "reset_cause", "firmware", "error", "lines", "dropped", "nonce", "type", "from_version", "detail",
                 "transient", "counter")
WRONG = (None, [[1]], {"a": {"b": []}}, "x" * 100_000, True, 1.5)
PLAUSIBLE = {"/heartbeat": {"version": "1.0.0", "seq": 0}, "/logs": {"lines": ["boot"]},
             "/check": {"type": "picow", "version": "1.0.0", "seq": 0, "nonce": "0" * 32},
             "/deploy/status": {"phase": "checking", "version": "1.0.0", "seq": 1}}


@pytest.mark.parametrize("route", [r for r in ROUTES if _kind(r) == "device"], ids=lambda r: r.path)
def test_every_device_field_of_the_wrong_type_under_a_valid_mac(site: Site, route: Route) -> None:
    """A board's body, its MAC right, with each field it may carry of each wrong type."""
    if site.http.get(f"/api/v1/devices/{BOARD}", headers=_bearer(site)).status_code == 404:
        site.key = site.hub.register(BOARD)
    counter = int(site.hub.client.device(BOARD).get("seq") or 0) + 10 ** 6 * (1 + list(PLAUSIBLE).index(route.path))
    for name in DEVICE_FIELDS:
        for value in WRONG:
            counter += 1
            raw = json.dumps(PLAUSIBLE.get(route.path, {}) | {"id": BOARD, "counter": counter, name: value}).encode()
            before, at = stored(site.hub), _log_size(site)
            status, kind, body = _send(site, "POST", route.path, raw, site.signed(raw))
            _check(site, f"POST {route.path} {name}={value!r:.30}", status, kind, body, before, at, "POST")


OPERATOR_BODIES = {
    "/api/v1/devices": {"id": "new-1", "type": "picow", "channel": "stable"},
    "/api/v1/devices/{id}/channel": {"channel": "canary"},
    "/api/v1/devices/{id}/heartbeat": {"version": "1.0.0", "seq": 0, "readings": {"t": 1}},
    "/api/v1/devices/{id}/logs/request": {"seconds": 10},
    "/api/v1/rollouts": {"target": "picow", "version": "9.9.9", "stages": [{"name": "all", "percent": 100}],
                         "halt_after_failures": 1, "promote_after_successes": 1},
    "/api/v1/rollouts/{id:rowid}/{action}": {"reason": "r"},
    "/api/v1/history": {"actor": "a", "kind": "k", "device_id": "x", "version": "1", "result": "", "detail": "",
                        "at": 1.0},
    "/api/v1/releases/import": {"url": "http://127.0.0.1:9/meta.json"},
}


@pytest.mark.parametrize("route", [r for r in ROUTES if r.path in OPERATOR_BODIES], ids=lambda r: r.path)
def test_every_operator_field_of_the_wrong_type(site: Site, route: Route) -> None:
    """An operator's body with each of its fields of each wrong type: refused with nothing stored, or taken."""
    if site.http.get(f"/api/v1/devices/{BOARD}", headers=_bearer(site)).status_code == 404:
        site.key = site.hub.register(BOARD)
    plausible = OPERATOR_BODIES[route.path]
    for name in plausible:
        for value in WRONG:
            raw = json.dumps(plausible | {name: value}).encode()
            before, at = stored(site.hub), _log_size(site)
            status, kind, body = _send(site, "POST", _fill(route), raw, _bearer(site))
            if status != 502:  # the import's host is down, as it should be: the URL was taken
                _check(site, f"POST {route.path} {name}={value!r:.30}", status, kind, body, before, at, "POST")


def test_the_enumeration_found_the_routes() -> None:
    paths = {r.path for r in ROUTES}
    assert {"/check", "/heartbeat", "/api/v1/devices", "/api/v1/rollouts", "/api/v1/webhook"} <= paths
    assert len(ROUTES) >= 25
