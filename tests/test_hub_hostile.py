"""Hostile input on every route of one real hub, table-driven.

Each case must be answered with a 4xx in the JSON error shape (`{"error": "..."}`), store nothing
(security events aside), and leave a device's counter free: the same counter, sent again in a valid
request, is accepted. The hub's log must show no traceback at the end.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import sqlite3
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from picoctl.signing import device_mac
from picoctl.sim.local_hub import LocalHub

RAW = "@@raw@@"  # replaced by raw JSON text: numbers and escapes a JSON encoder would not write
BIG = ["9223372036854775808", "-9223372036854775809", "1" + "0" * 30, "1" * 5000]
NON_FINITE = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"]
HOSTILE_NUMBERS = BIG + NON_FINITE
SURROGATE = '"\\ud800x"'
NUL = '"a\\u0000b"'
WEBHOOK_SECRET = "s3cret"


def raw_json(template: dict[str, Any], raw: str) -> bytes:
    return json.dumps(template).replace(f'"{RAW}"', raw).encode()


@dataclass
class Board:
    id: str
    key: str
    counter: int = 0

    def post(self, c: httpx.Client, path: str, body: bytes) -> httpx.Response:
        return c.post(path, content=body, headers={"X-Picoctl-Device": self.id, "X-Picoctl-Mac": device_mac(self.key, body)})

    def beat(self, counter: int, **fields: Any) -> dict[str, Any]:
        return {"id": self.id, "counter": counter, "version": "1.0.0", "seq": 0, "uptime_s": 5, "mem_free": 1000,
                "rssi": -50, "readings": {"moisture": 40.0}} | fields


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    h = LocalHub.create(tmp_path_factory.mktemp("hostile") / "site")
    h.set_webhook_secret(WEBHOOK_SECRET)
    try:
        h.start()
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def board(hub: LocalHub) -> Board:
    return Board("gh-01", hub.register("gh-01"))


def stored(hub: LocalHub) -> dict[str, Any]:
    """Everything the store holds, by table, except security events (refused requests log one)."""
    db = sqlite3.connect(hub.cfg.data_dir / "fleet.db")
    try:
        out: dict[str, Any] = {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
                               for t in ("devices", "heartbeats", "releases", "rollouts", "offers")}
        out["events"] = db.execute("SELECT * FROM events WHERE kind != 'security' ORDER BY id").fetchall()
        return out
    finally:
        db.close()


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it: Python's parser also takes NaN and Infinity."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def assert_refused(r: httpx.Response, status: int | tuple[int, ...]) -> None:
    assert r.status_code in ((status,) if isinstance(status, int) else status), (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json", r.text[:300]
    assert isinstance(strict_json(r.text)["error"], str) and r.json()["error"]


# --- device routes: a valid MAC over a hostile body --------------------------------------------

def _device_cases() -> Iterator[tuple[str, str, Any]]:
    """(id, path, fn(board, counter) -> body bytes)."""
    for raw in HOSTILE_NUMBERS:
        yield f"heartbeat-counter-{raw[:24]}", "/heartbeat", lambda b, n, raw=raw: raw_json(b.beat(RAW), raw)
        yield (f"logs-dropped-{raw[:24]}", "/logs", lambda b, n, raw=raw: raw_json(
            {"id": b.id, "counter": n, "lines": ["boot"], "dropped": RAW}, raw))
        for name in ("seq", "uptime_s", "mem_free", "rssi", "boots"):
            yield (f"heartbeat-{name}-{raw[:24]}", "/heartbeat",
                   lambda b, n, raw=raw, name=name: raw_json(b.beat(n, **{name: RAW}), raw))
        yield (f"heartbeat-reading-{raw[:24]}", "/heartbeat",
               lambda b, n, raw=raw: raw_json(b.beat(n, readings={"moisture": RAW}), raw))
        yield (f"check-seq-{raw[:24]}", "/check", lambda b, n, raw=raw: raw_json(
            {"id": b.id, "counter": n, "type": "picow", "version": "1.0.0", "seq": RAW, "nonce": "0" * 32}, raw))
        yield (f"status-seq-{raw[:24]}", "/deploy/status", lambda b, n, raw=raw: raw_json(
            {"id": b.id, "counter": n, "phase": "checking", "version": "1.1.0", "seq": RAW}, raw))
    for name in ("version", "phase"):
        yield f"heartbeat-{name}-surrogate", "/heartbeat", lambda b, n, name=name: raw_json(b.beat(n, **{name: RAW}), SURROGATE)
    yield "heartbeat-reading-key-surrogate", "/heartbeat", lambda b, n: json.dumps(b.beat(n)).replace(
        '"moisture"', SURROGATE).encode()
    yield "heartbeat-version-nul", "/heartbeat", lambda b, n: raw_json(b.beat(n, version=RAW), NUL)
    yield "status-detail-surrogate", "/deploy/status", lambda b, n: raw_json(
        {"id": b.id, "counter": n, "phase": "checking", "version": "1.1.0", "seq": 1, "detail": RAW}, SURROGATE)
    yield "heartbeat-nested-deeply", "/heartbeat", lambda b, n: ("[" * 5000 + "]" * 5000).encode()
    yield "heartbeat-counter-float", "/heartbeat", lambda b, n: json.dumps(b.beat(n + 0.5)).encode()
    yield "heartbeat-counter-bool", "/heartbeat", lambda b, n: json.dumps(b.beat(True)).encode()
    yield "check-bad-nonce", "/check", lambda b, n: json.dumps(
        {"id": b.id, "counter": n, "type": "picow", "version": "1.0.0", "seq": 0, "nonce": "²" * 32}).encode()
    yield "status-bad-phase", "/deploy/status", lambda b, n: json.dumps(
        {"id": b.id, "counter": n, "phase": "\u00b2", "version": "1.1.0", "seq": 1}).encode()


DEVICE_CASES = list(_device_cases())


@pytest.mark.parametrize("path,make", [(p, m) for _, p, m in DEVICE_CASES], ids=[c[0] for c in DEVICE_CASES])
def test_hostile_device_bodies_are_400_store_nothing_and_keep_the_counter_free(hub: LocalHub, board: Board,
                                                                               path: str, make: Any) -> None:
    counter = board.counter + 1
    before = stored(hub)
    with httpx.Client(base_url=hub.url) as c:
        assert_refused(board.post(c, path, make(board, counter)), 400)
        assert stored(hub) == before
        ok = board.post(c, "/heartbeat", json.dumps(board.beat(counter)).encode())
        assert ok.status_code == 200, ok.text  # the refused request did not take the counter
    board.counter = counter
    strict_json(httpx.get(hub.url + "/api/v1/devices", headers=hub.auth).text)  # still JSON after all of it


@pytest.mark.parametrize("header,value", [
    ("X-Picoctl-Mac", "é" * 64), ("X-Picoctl-Mac", "\u00ff" * 64), ("X-Picoctl-Device", "gh-é"),
])
def test_non_ascii_auth_headers_are_401(hub: LocalHub, board: Board, header: str, value: str) -> None:
    body = json.dumps(board.beat(board.counter + 1)).encode()
    headers = {"X-Picoctl-Device": board.id, "X-Picoctl-Mac": device_mac(board.key, body)}
    headers[header] = value.encode("latin-1")  # type: ignore[assignment]
    before = stored(hub)
    assert_refused(httpx.post(hub.url + "/heartbeat", content=body, headers=headers), 401)
    assert stored(hub) == before


# --- operator routes -------------------------------------------------------------------------

def _meta_header(raw: str) -> str:
    meta = {"target": "picow", "version": "1.1.0", "size": RAW, "sha256": "0" * 64}
    return base64.b64encode(raw_json(meta, raw)).decode()


def _operator_cases() -> Iterator[tuple[str, str, str, bytes | None, dict[str, str], int | tuple[int, ...]]]:
    """(id, method, path, body, extra headers, expected status)."""
    for raw in HOSTILE_NUMBERS:
        tag = raw[:24]
        yield (f"rollout-halt-{tag}", "POST", "/api/v1/rollouts", raw_json(
            {"target": "picow", "version": "1.1.0", "stages": [{"name": "all"}], "halt_after_failures": RAW}, raw), {}, 400)
        yield (f"rollout-promote-{tag}", "POST", "/api/v1/rollouts", raw_json(
            {"target": "picow", "version": "1.1.0", "stages": [{"name": "all"}], "promote_after_successes": RAW}, raw),
            {}, 400)
        yield (f"rollout-percent-{tag}", "POST", "/api/v1/rollouts", raw_json(
            {"target": "picow", "version": "1.1.0", "stages": [{"name": "all", "percent": RAW}]}, raw), {}, 400)
        yield f"history-at-{tag}", "POST", "/api/v1/history", raw_json({"actor": "a", "kind": "k", "at": RAW}, raw), {}, 400
        for name in ("seq", "uptime_s", "mem_free", "rssi"):
            yield (f"relay-{name}-{tag}", "POST", "/api/v1/devices/usb-new/heartbeat",
                   raw_json({"version": "1.0.0", name: RAW}, raw), {}, 400)
        yield f"register-id-{tag}", "POST", "/api/v1/devices", raw_json({"id": RAW, "type": "picow"}, raw), {}, 400
        yield (f"log-request-seconds-{tag}", "POST", "/api/v1/devices/gh-01/logs/request",
               raw_json({"seconds": RAW}, raw), {}, 400)
        yield (f"publish-meta-{tag}", "PUT", "/api/v1/releases/picow/1.1.0", b"x",
               {"X-Picoctl-Meta": _meta_header(raw)}, 400)
    for value in ("1e300", "-1", "253402300800"):
        yield f"history-at-{value}", "POST", "/api/v1/history", raw_json({"actor": "a", "kind": "k", "at": RAW}, value), {}, 400
    yield "history-kind-surrogate", "POST", "/api/v1/history", raw_json({"actor": "a", "kind": RAW}, SURROGATE), {}, 400
    yield "history-detail-nul", "POST", "/api/v1/history", raw_json({"actor": "a", "kind": "k", "detail": RAW}, NUL), {}, 400
    yield "rollout-stage-name-surrogate", "POST", "/api/v1/rollouts", raw_json(
        {"target": "picow", "version": "1.1.0", "stages": [{"name": RAW}]}, SURROGATE), {}, 400
    yield "rollout-halt-negative", "POST", "/api/v1/rollouts", json.dumps(
        {"target": "picow", "version": "1.1.0", "stages": [{"name": "all"}], "halt_after_failures": -1}).encode(), {}, 400
    yield "rollout-nested-deeply", "POST", "/api/v1/rollouts", ("[" * 100000 + "]" * 100000).encode(), {}, 400
    for value in ("1" + "0" * 30, "9223372036854775808", "-1", "²", "٣", "1_0", " 1", "1e3", "0x10"):
        yield f"history-after-{value}", "GET", f"/api/v1/history?after={value}", None, {}, 400
        yield f"history-limit-{value}", "GET", f"/api/v1/history?limit={value}", None, {}, 400
        yield f"logs-after-{value}", "GET", f"/api/v1/devices/gh-01/logs?after={value}", None, {}, 400
        yield f"readings-limit-{value}", "GET", f"/api/v1/devices/gh-01/readings?limit={value}", None, {}, 400
    for segment in ("²", "%C2%B2", "1" * 30, "9223372036854775808", "-1", "1.0", "%201", "٣"):
        yield f"rollout-get-{segment}", "GET", f"/api/v1/rollouts/{segment}", None, {}, 404
        yield f"rollout-halt-id-{segment}", "POST", f"/api/v1/rollouts/{segment}/halt", b"", {}, 404
    yield "rollout-unknown", "GET", "/api/v1/rollouts/123456789012345678", None, {}, 404
    yield "rollout-action-reason", "POST", "/api/v1/rollouts/1/halt", raw_json({"reason": RAW}, "1" * 30), {}, 400
    yield "device-get-superscript", "GET", "/api/v1/devices/%C2%B2", None, {}, 404
    yield "device-delete-superscript", "DELETE", "/api/v1/devices/%C2%B2", None, {}, 404
    yield "relay-id-superscript", "POST", "/api/v1/devices/%C2%B2/heartbeat", b"{}", {}, 400
    yield "relay-reading-surrogate", "POST", "/api/v1/devices/usb-new/heartbeat", raw_json(
        {"readings": {"t": RAW}}, SURROGATE), {}, 400
    yield "channel-number", "POST", "/api/v1/devices/gh-01/channel", raw_json({"channel": RAW}, "1" * 30), {}, 400
    yield "check-now-unknown", "POST", "/api/v1/devices/%C2%B2/check-now", b"", {}, 404
    yield "import-url-number", "POST", "/api/v1/releases/import", raw_json({"url": RAW}, "1e999"), {}, 400
    yield "publish-meta-not-base64", "PUT", "/api/v1/releases/picow/1.1.0", b"x", {"X-Picoctl-Meta": "%%%"}, 400
    yield "publish-meta-non-ascii", "PUT", "/api/v1/releases/picow/1.1.0", b"x", {"X-Picoctl-Meta": "é"}, 400
    yield "publish-meta-surrogate", "PUT", "/api/v1/releases/picow/1.1.0", b"x", {"X-Picoctl-Meta": base64.b64encode(
        raw_json({"target": "picow", "version": RAW}, SURROGATE)).decode()}, 400
    yield "bearer-non-ascii", "GET", "/api/v1/devices", None, {"Authorization": "Bearer é"}, 401
    yield "bearer-bytes", "GET", "/api/v1/devices", None, {"Authorization": "Bearer \u00ff\u00fe"}, 401
    body = json.dumps({"meta_url": "http://127.0.0.1:9/meta.json"}).encode()
    good = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    yield "webhook-signature-non-ascii", "POST", "/api/v1/webhook", body, {"X-Hub-Signature-256": "sha256=" + "é" * 64}, 401
    yield ("webhook-signature-non-ascii-tail", "POST", "/api/v1/webhook", body,
           {"X-Hub-Signature-256": "sha256=" + good[:-1] + "é"}, 401)
    yield "header-line-20k", "GET", "/api/v1/devices", None, {"X-Filler": "a" * 20 * 1024}, 431


OPERATOR_CASES = list(_operator_cases())


@pytest.mark.parametrize("method,path,body,headers,status", [c[1:] for c in OPERATOR_CASES],
                         ids=[c[0] for c in OPERATOR_CASES])
def test_hostile_operator_requests_are_4xx_and_store_nothing(hub: LocalHub, method: str, path: str, body: bytes | None,
                                                            headers: dict[str, str], status: int) -> None:
    before = stored(hub)
    sent = hub.auth | {k: v.encode("latin-1") for k, v in headers.items()}  # type: ignore[misc]
    r = httpx.request(method, hub.url + path, content=body, headers=sent)
    assert_refused(r, status)
    assert stored(hub) == before


@pytest.mark.parametrize("content_length", [b"abc", b"-1", b"\xc2\xb2", b"1, 2", b"9" * 40])
def test_a_malformed_content_length_gets_the_json_error_shape(hub: LocalHub, content_length: bytes) -> None:
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as s:
        s.sendall(b"POST /heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: " + content_length + b"\r\n\r\n{}")
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in head.lower(), answer[:300]
    assert json.loads(body)["error"]


def test_the_hub_logged_no_traceback(hub: LocalHub) -> None:
    assert "Traceback" not in Path(hub.log_path).read_text()
