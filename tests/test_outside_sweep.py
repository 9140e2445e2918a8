"""A generated sweep of every hub route, device API and operator API, on SQLite and on PostgreSQL:
bodies cut short or stalled, chunked garbage, numbers out of range in every numeric field, odd query
values, unknown and outlandish ids. Every answer is a 4xx with a JSON error (or, for a client that
went away, none), never a 5xx or a hang; a refused request leaves the store and its audit log as
they were, and the hub logs no traceback. (test_outside_routes.py sweeps methods, auth, body shapes
and content types on SQLite; this adds what it does not try, and runs its bodies on PostgreSQL.)"""

from __future__ import annotations

import base64
import json
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.routing import Route

from picoctl.protocol import is_device_id
from picoctl.signing import device_mac
from picoctl.sim.local_hub import LocalHub
from test_hub_hostile import WEBHOOK_SECRET, strict_json
from test_outside_routes import BODIES, OPERATOR_BODIES, PLAUSIBLE, ROUTES, _kind

BOARD = "sweep-01"
BODY_TIMEOUT_S = 2.0
TABLES = ("devices", "heartbeats", "releases", "rollouts", "offers", "events")


PUBLISH = "/api/v1/releases/{target}/{version}"


@dataclass
class Site:
    hub: LocalHub
    key: str
    http: httpx.Client
    meta: str  # the X-Picoctl-Meta header of a signed picow 1.0.0 that is not published

    pg: Any = None  # an autocommit connection to the PostgreSQL store, once opened

    def snapshot(self) -> dict[str, Any]:
        """Every row of the store, by table, but for security events (a refused request logs one)."""
        url = self.hub.cfg.hub.database_url
        if url:
            import psycopg

            self.pg = self.pg or psycopg.connect(url, autocommit=True)
            rows = {t: self.pg.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES}
            kinds = self.pg.execute("SELECT id, kind FROM events").fetchall()
        else:
            db = sqlite3.connect(self.hub.cfg.data_dir / "fleet.db")
            try:
                rows = {t: db.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES}
                kinds = db.execute("SELECT id, kind FROM events").fetchall()
            finally:
                db.close()
        security = {i for i, k in kinds if k == "security"}
        rows["events"] = [r for r in rows["events"] if r[0] not in security]
        return {t: sorted(map(repr, r)) for t, r in rows.items()}

    def log_size(self) -> int:
        return self.hub.log_path.stat().st_size

    def auth(self, route: Route, body: bytes) -> dict[str, str]:
        import hashlib
        import hmac

        kind = _kind(route)
        if route.path == PUBLISH:
            return {"Authorization": f"Bearer {self.hub.token}", "X-Picoctl-Meta": self.meta}
        if kind == "operator":
            return {"Authorization": f"Bearer {self.hub.token}"}
        if kind == "device":
            return {"X-Picoctl-Device": BOARD, "X-Picoctl-Mac": device_mac(self.key, body)}
        if kind == "webhook":
            return {"X-Hub-Signature-256": "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()}
        return {}

    def fresh_board(self) -> None:
        """The board registered anew, its counter from 0."""
        if self.http.get(f"/api/v1/devices/{BOARD}", headers={"Authorization": f"Bearer {self.hub.token}"}).status_code == 200:
            self.hub.client.remove_device(BOARD)
        self.key = self.hub.register(BOARD)

    def ensure_board(self) -> None:
        if self.http.get(f"/api/v1/devices/{BOARD}", headers={"Authorization": f"Bearer {self.hub.token}"}).status_code == 404:
            self.key = self.hub.register(BOARD)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    settings: dict[str, Any] = {"body_timeout_s": BODY_TIMEOUT_S}
    if request.param == "postgresql":
        settings["database_url"] = request.getfixturevalue("postgres").create_database(f"t_{uuid.uuid4().hex[:12]}")
    h = LocalHub.create(tmp_path_factory.mktemp(f"sweep-{request.param}") / "site", **settings)
    h.set_webhook_secret(WEBHOOK_SECRET)
    folder = h.build_release("1.0.0", {"main.py": b"print('x')\n", "lib/pad.bin": bytes(range(256)) * 400})
    meta = base64.b64encode((folder / "meta.json").read_bytes()).decode()
    try:
        h.start()
        with httpx.Client(base_url=h.url, timeout=30) as c:
            site = Site(h, h.register(BOARD), c, meta)
            yield site
            if site.pg is not None:
                site.pg.close()
    finally:
        h.close()


def _refused_well(site: Site, what: str, status: int, kind: str, body: bytes, before: dict[str, Any],
                  log_at: int, head: bool = False) -> None:
    """Below 500; a refusal is JSON with a message and leaves the store as it was; no traceback logged."""
    assert status < 500, (what, status, body[:300])
    if status >= 400:
        assert kind.startswith("application/json"), (what, status, kind, body[:300])
        if not head:
            error = strict_json(body.decode())["error"]
            assert isinstance(error, str) and error.strip(), (what, body[:300])
        assert site.snapshot() == before, f"{what}: refused with {status} but the store changed"
    log = site.hub.log_path.read_bytes()[log_at:]
    assert b"Traceback" not in log and b"ERROR" not in log, (what, log[-2000:].decode(errors="replace"))


def _send(site: Site, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    with site.http.stream(method, path, content=body, headers=headers or {}) as r:
        kind = r.headers.get("content-type", "")
        return r.status_code, kind, b"" if kind.startswith("text/event-stream") else r.read()


PLAIN = {"id": BOARD, "sha256": "0" * 64, "target": "picow", "version": "1.0.0", "action": "halt"}


def _path(route: Route, **values: str) -> str:
    def one(m: re.Match[str]) -> str:
        name, _, kind = m.group(1).partition(":")
        return values.get(name, "1" if kind == "rowid" else PLAIN.get(name, "x"))
    return re.sub(r"\{([^}]+)\}", one, route.path)


def _plausible(route: Route) -> dict[str, Any]:
    return PLAUSIBLE.get(route.path) or OPERATOR_BODIES.get(route.path) or {}


WRITES = [r for r in ROUTES if {"POST", "PUT"} & set(r.methods or ())]
READS = [r for r in ROUTES if "GET" in (r.methods or ())]


# --- framing: a body cut short, stalled, or chunked wrongly ----------------------------------

def _raw(site: Site, head: bytes, body: bytes, *, half_close: bool, wait_s: float) -> tuple[bytes, float, bool]:
    """(what the hub answered, how long it took, whether it closed the connection) for raw bytes."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", site.hub.port), timeout=wait_s) as s:
        s.sendall(head + body)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        answer, closed = b"", False
        try:
            while chunk := s.recv(65536):
                answer += chunk
            closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
    return answer, time.monotonic() - t0, closed


def _head(site: Site, route: Route, method: str, framing: str, length: int) -> bytes:
    auth = site.auth(route, b"{}")
    lines = [f"{method} {_path(route)} HTTP/1.1", "Host: hub", "Content-Type: application/json",
             *(f"{k}: {v}" for k, v in auth.items()), framing.format(length=length)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer_of(raw: bytes) -> tuple[int, str, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    kind = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")[1:]
                 if line.lower().startswith(b"content-type:")), "")
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return status, kind, body


FRAMINGS = {
    # name: (header line, the body sent, the client half-closes)
    "cut short": ("Content-Length: {length}", b'{"id": "x", "pad": "', True),
    "chunked garbage": ("Transfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n", False),
    "chunk cut short": ("Transfer-Encoding: chunked", b"40\r\n{\"id\": ", True),
    "two lengths": ("Content-Length: 2\r\nContent-Length: {length}", b"{}", False),
    "length and chunked": ("Content-Length: {length}\r\nTransfer-Encoding: chunked", b"0\r\n\r\n", False),
    "negative length": ("Content-Length: -{length}", b"{}", False),
}


@pytest.mark.parametrize("framing", FRAMINGS)
def test_a_body_framed_wrongly_is_refused_on_every_route(site: Site, framing: str) -> None:
    header, body, half_close = FRAMINGS[framing]
    for route in WRITES:
        method = "PUT" if "PUT" in (route.methods or ()) else "POST"
        before, at = site.snapshot(), site.log_size()
        raw, took, closed = _raw(site, _head(site, route, method, header, len(body) + 100), body,
                                 half_close=half_close, wait_s=BODY_TIMEOUT_S + 10)
        what = f"{method} {route.path} {framing}"
        assert closed, (what, raw[:300])  # answered and closed, or closed: never left hanging
        if raw or not half_close:  # a client that went away may get no answer at all
            status, kind, answer = _answer_of(raw)
            assert 400 <= status < 500, (what, raw[:300])
            _refused_well(site, what, status, kind, answer, before, at)
        else:
            _refused_well(site, what, 400, "application/json", b'{"error": "gone"}', before, at)


def test_a_stalled_body_is_a_408_and_the_connection_is_closed_on_every_route(site: Site) -> None:
    """Every route at once, each given part of its body and then nothing more."""
    before, at = site.snapshot(), site.log_size()

    def stall(route: Route) -> tuple[str, bytes, float, bool]:
        method = "PUT" if "PUT" in (route.methods or ()) else "POST"
        raw, took, closed = _raw(site, _head(site, route, method, "Content-Length: {length}", 1000), b'{"id": ',
                                 half_close=False, wait_s=BODY_TIMEOUT_S + 15)
        return f"{method} {route.path}", raw, took, closed

    with ThreadPoolExecutor(len(WRITES)) as pool:
        results = list(pool.map(stall, WRITES))
    for what, raw, took, closed in results:
        assert raw, (what, took)
        status, kind, answer = _answer_of(raw)
        assert status == 408 and closed, (what, raw[:300], took)
        assert took < BODY_TIMEOUT_S + 10, (what, took)
    _refused_well(site, "stalled bodies", 408, "application/json", b'{"error": "stalled"}', before, at)


# --- numbers out of range, in every numeric field ------------------------------------------

NUMBERS = ["-1", "-0", "0.5", "-1e-400", "9223372036854775807", "9223372036854775808", "18446744073709551616",
           "-9223372036854775809", "1" + "0" * 400, "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e308"]
BOARD_NUMBERS = ("seq", "uptime_s", "mem_free", "rssi", "keys", "boots", "counter", "dropped")  # any board body
MARK = "\u0001number\u0001"


def _with_number(body: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """`body` with the value at `path` replaced by MARK (raw number text goes there)."""
    copy = json.loads(json.dumps(body))
    where = copy
    for step in path[:-1]:
        where = where[step]
    where[path[-1]] = MARK
    return copy


def _numeric_paths(body: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(body, dict):
        for k, v in body.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                yield (*path, k)
            yield from _numeric_paths(v, (*path, k))
    elif isinstance(body, list):
        for i, v in enumerate(body):
            yield from _numeric_paths(v, (*path, i))


def _number_cases(route: Route) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    base = _plausible(route) | ({"id": BOARD} if _kind(route) == "device" else {})
    paths = list(_numeric_paths(base))
    extra = BOARD_NUMBERS if _kind(route) == "device" else ("x",)  # ("x",): a field the route does not read
    return [(p, base) for p in paths + [(name,) for name in extra if (name,) not in paths]]


@pytest.mark.parametrize("route", [r for r in WRITES if _kind(r) in ("device", "operator")], ids=lambda r: r.path)
def test_every_numeric_field_out_of_range_is_taken_or_refused_cleanly(site: Site, route: Route) -> None:
    site.fresh_board()  # an earlier route's counter of 2**63-1 leaves none above it for this one
    counter, judged = 0, 0
    for path, base in sorted(_number_cases(route), key=lambda case: case[0] == ("counter",)):  # counter last
        for number in NUMBERS:
            counter += 1
            template = _with_number(base | ({"counter": counter} if _kind(route) == "device" else {}), path)
            raw = json.dumps(template).replace(json.dumps(MARK), number).encode()
            before, at = site.snapshot(), site.log_size()
            status, kind, body = _send(site, "POST", _path(route), raw, site.auth(route, raw) | {"Content-Type": "application/json"})
            if status == 502 and route.path == "/api/v1/releases/import":
                continue  # the import's host is down, as it should be: the body was taken
            _refused_well(site, f"POST {route.path} {'.'.join(map(str, path))}={number[:20]}", status, kind, body, before, at)
            judged += status not in (401, 403)  # past the MAC and the counter: the body was looked at
    assert judged, "no body was ever judged: every request was refused before it"


# --- odd query values on every read -------------------------------------------------------

QUERY_NAMES = ("limit", "after", "target", "device", "kind", "channel", "id")
QUERY_VALUES = ("-1", "0", "9223372036854775808", "18446744073709551616", "NaN", "1e400", "0x10", "1_000", " 1",
                "", "%00", "%C3%A9", "%ED%A0%80", "%FF", "9" * 5000, "a&limit=2&limit=3", "%0d%0aX-Injected: 1")


@pytest.mark.parametrize("route", READS, ids=lambda r: r.path)
def test_every_read_takes_odd_query_values_cleanly(site: Site, route: Route) -> None:
    site.ensure_board()
    for name in QUERY_NAMES:
        for value in QUERY_VALUES:
            before, at = site.snapshot(), site.log_size()
            status, kind, body = _send(site, "GET", f"{_path(route)}?{name}={value}", None, site.auth(route, b""))
            _refused_well(site, f"GET {route.path}?{name}={value[:30]}", status, kind, body, before, at)
            assert b"X-Injected" not in body or kind.startswith("application/json"), body[:300]


# --- unknown and outlandish ids --------------------------------------------------------------

IDS = {
    "unknown device": {"id": "pico-nobody"}, "longest id": {"id": "a" * 64}, "id one too long": {"id": "a" * 65},
    "10k id": {"id": "a" * 10000}, "NUL": {"id": "a%00b"}, "slash": {"id": "a%2Fb"}, "dot dot": {"id": "%2E%2E"},
    "unicode": {"id": "%C3%A9%E2%82%AC"}, "surrogate": {"id": "%ED%A0%80"}, "invalid UTF-8": {"id": "%FF%FE"},
    "unknown artifact": {"sha256": "f" * 64}, "short sha256": {"sha256": "f" * 63}, "upper sha256": {"sha256": "F" * 64},
    "unknown release": {"version": "99.0.0"}, "unknown target": {"target": "toaster"},
    "bad version": {"version": "1.0.0%0a"}, "unknown rollout": {"id": "999999"},
    "rollout 2**64": {"id": "18446744073709551616"}, "unknown action": {"action": "explode"},
}


@pytest.mark.parametrize("route", [r for r in ROUTES if "{" in r.path], ids=lambda r: r.path)
def test_every_route_refuses_unknown_and_outlandish_ids_cleanly(site: Site, route: Route) -> None:
    site.ensure_board()
    for name, values in IDS.items():
        path = _path(route, **values)
        if path == _path(route):
            continue  # no parameter of that name here
        for method in sorted(route.methods or ()):
            body = json.dumps(_plausible(route) | ({"id": BOARD, "counter": 1} if _kind(route) == "device" else {})).encode()
            sent = body if method in ("POST", "PUT") else None
            before, at = site.snapshot(), site.log_size()
            status, kind, answer = _send(site, method, path, sent, site.auth(route, body if sent else b""))
            what = f"{method} {path[:80]} ({name})"
            if status < 400:  # a USB board's first heartbeat registers it: the one route taking a new id
                assert route.path == "/api/v1/devices/{id}/heartbeat" and is_device_id(unquote(values["id"])), what
                site.hub.client.remove_device(unquote(values["id"]))  # unknown again to the routes after this one
                continue
            assert 400 <= status < 500, (what, status, answer[:300])
            _refused_well(site, what, status, kind, answer, before, at, head=method == "HEAD")


# --- the body shapes of test_outside_routes, on this store --------------------------------

@pytest.mark.parametrize("site", ["postgresql"], indirect=True)  # test_outside_routes.py sweeps them on SQLite
def test_every_write_refuses_bad_bodies_cleanly(site: Site) -> None:
    site.ensure_board()
    for route in WRITES:
        method = "PUT" if "PUT" in (route.methods or ()) else "POST"
        for name, raw in BODIES.items():
            before, at = site.snapshot(), site.log_size()
            headers = site.auth(route, raw) | {"Content-Type": "application/json"}
            status, kind, body = _send(site, method, _path(route), raw, headers)
            _refused_well(site, f"{method} {route.path} body {name}", status, kind, body, before, at)


def test_the_sweep_saw_every_kind_of_route() -> None:
    assert {_kind(r) for r in WRITES} == {"device", "operator", "webhook"}
    assert len(READS) >= 10 and any(r.path == PUBLISH for r in WRITES)


def test_the_hub_logged_no_traceback(site: Site) -> None:
    """Run last: what the hub logged after an earlier check had read its log."""
    site.http.get("/healthz")
    log = site.hub.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
