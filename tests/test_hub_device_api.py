"""The device API of a real hub: authentication, refusals, bad input, artifacts with Range, health."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import time

import httpx
import pytest

from picoctl.signing import device_mac
from picoctl.sim.fleet import SimDevice
from waiting import wait_for


def _db(hub) -> sqlite3.Connection:
    return sqlite3.connect(hub.cfg.data_dir / "fleet.db")


def _counts(hub) -> tuple[int, int]:
    c = _db(hub)
    return (c.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0],
            c.execute("SELECT COUNT(*) FROM events WHERE kind = 'security'").fetchone()[0])


def _post(hub, path: str, body: bytes, device: str, key: str | None, mac: str | None = None) -> httpx.Response:
    headers = {"X-Picoctl-Device": device, "Content-Type": "application/json"}
    if key is not None or mac is not None:
        headers["X-Picoctl-Mac"] = mac if mac is not None else device_mac(key, body)
    return httpx.post(hub.url + path, content=body, headers=headers)


def _beat(device: str, counter: int, **extra: object) -> bytes:
    return json.dumps({"id": device, "counter": counter, "version": "1.0.0", "seq": 0, "uptime_s": 5,
                       "mem_free": 1000, "rssi": -50, "readings": {"moisture": 40.0}} | extra).encode()


def test_heartbeat_is_acknowledged_with_a_mac_and_stored(hub) -> None:
    key = hub.register("gh-01")
    r = _post(hub, "/heartbeat", _beat("gh-01", 1000001), "gh-01", key)
    assert r.status_code == 200
    assert r.json() == {"ok": True, "counter": 1000001, "check_now": False}
    assert r.headers["X-Picoctl-Mac"] == device_mac(key, r.content)
    detail = hub.client.device("gh-01")
    assert detail["status"] == "online" and detail["version"] == "1.0.0" and detail["rssi"] == -50
    assert [h["readings"] for h in detail["heartbeats"]] == [{"moisture": 40.0}]


def test_check_now_is_delivered_once_in_a_heartbeat_response(hub) -> None:
    key = hub.register("gh-01")
    hub.client.check_now("gh-01")
    assert hub.client.device("gh-01")["check_now"] is True
    hub.restart()  # the request is kept in the store
    assert _post(hub, "/heartbeat", _beat("gh-01", 1), "gh-01", key).json()["check_now"] is True
    assert _post(hub, "/heartbeat", _beat("gh-01", 2), "gh-01", key).json()["check_now"] is False
    hub.restart()
    assert _post(hub, "/heartbeat", _beat("gh-01", 3), "gh-01", key).json()["check_now"] is False


@pytest.mark.parametrize("case", ["unknown", "no_mac", "bad_mac", "replay", "older", "id_mismatch", "bad_header"])
def test_refused_device_requests_store_nothing_but_a_security_event(hub, case: str) -> None:
    key = hub.register("gh-01")
    assert _post(hub, "/heartbeat", _beat("gh-01", 10), "gh-01", key).status_code == 200
    before = _counts(hub)
    body, device, sign_key, mac = _beat("gh-01", 11), "gh-01", key, None
    expected = 401
    if case == "unknown":
        body, device, expected = _beat("gh-99", 11), "gh-99", 403
    elif case == "no_mac":
        sign_key = None
    elif case == "bad_mac":
        mac = "00" * 32
    elif case == "replay":
        body, expected = _beat("gh-01", 10), 403
    elif case == "older":
        body, expected = _beat("gh-01", 3), 403
    elif case == "id_mismatch":
        body, expected = _beat("gh-02", 11), 403
    elif case == "bad_header":
        device = "bad id!"
    r = _post(hub, "/heartbeat", body, device, sign_key, mac)
    assert r.status_code == expected and "error" in r.json()
    time.sleep(0.2)  # the security event is written after the answer
    beats, security = _counts(hub)
    assert beats == before[0] and security == before[1] + 1
    assert _db(hub).execute("SELECT last_counter FROM devices").fetchone()[0] == 10
    # the same request signed properly with a fresh counter still passes: nothing was poisoned
    assert _post(hub, "/heartbeat", _beat("gh-01", 12), "gh-01", key).status_code == 200


def test_replayed_counter_message_and_event(hub) -> None:
    key = hub.register("gh-01")
    body = _beat("gh-01", 5)
    assert _post(hub, "/heartbeat", body, "gh-01", key).status_code == 200
    r = _post(hub, "/heartbeat", body, "gh-01", key)
    assert r.status_code == 403 and r.json() == {"error": "replayed counter"}
    time.sleep(0.2)
    events = hub.client.history(kind="security")
    assert events[-1]["device_id"] == "gh-01" and "replayed counter" in events[-1]["detail"]


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    (b'{"id": "gh-01", "counter": 1, "readings": {"t": NaN}}', "NaN is not a number JSON allows"),
])
def test_malformed_bodies_are_400(hub, body: bytes, message: str) -> None:
    key = hub.register("gh-01")
    r = _post(hub, "/heartbeat", body, "gh-01", key)
    assert r.status_code == 400 and message in r.json()["error"]
    assert _counts(hub)[0] == 0


@pytest.mark.parametrize("path, extra, field", [
    ("/heartbeat", {"uptime_s": "long"}, "uptime_s"),
    ("/heartbeat", {"mem_free": 1.5}, "mem_free"),
    ("/heartbeat", {"readings": [1]}, "readings"),
    ("/heartbeat", {"readings": {"x": {"nested": 1}}}, "readings.x"),
    ("/heartbeat", {"phase": "x" * 65}, "phase"),
    ("/heartbeat", {"counter": "7"}, "counter"),
    ("/deploy/status", {"phase": "committed", "seq": "1"}, "seq"),
    ("/deploy/status", {"phase": "nope", "seq": 1}, "phase"),
    ("/deploy/status", {"phase": "failed", "seq": 1, "transient": "yes"}, "transient"),
    ("/check", {"type": "picow", "nonce": "short"}, "nonce"),
    ("/check", {"type": "picow", "nonce": "ab" * 16, "seq": None}, "seq"),
])
def test_wrong_types_are_400_naming_the_field(hub, path: str, extra: dict, field: str) -> None:
    key = hub.register("gh-01")
    body = json.dumps(json.loads(_beat("gh-01", 1)) | extra).encode()
    r = _post(hub, path, body, "gh-01", key)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]
    assert _counts(hub)[0] == 0


def test_check_refuses_another_device_type(hub) -> None:
    key = hub.register("gh-01")
    r = _post(hub, "/check", _beat("gh-01", 1, type="pico", nonce="ab" * 16), "gh-01", key)
    assert r.status_code == 400 and "registered as picow" in r.json()["error"]


def test_check_without_an_offer_repeats_the_nonce_and_is_maced(hub) -> None:
    key = hub.register("gh-01")
    dev = SimDevice("gh-01", key)
    with httpx.Client(base_url=hub.url) as c:
        assert dev.check(c) is None  # the simulator verifies MAC, nonce and id


def test_body_over_the_cap_is_413_with_or_without_content_length(hub) -> None:
    key = hub.register("gh-01")
    big = _beat("gh-01", 1, readings={"note": "x"}, pad="y" * 17000)
    r = _post(hub, "/heartbeat", big, "gh-01", key)
    assert r.status_code == 413 and "limit" in r.json()["error"]

    def chunks():
        for _ in range(40):
            yield b" " * 1024

    r = httpx.post(hub.url + "/heartbeat", content=chunks(), headers={"X-Picoctl-Device": "gh-01"})
    assert r.status_code == 413
    assert _counts(hub)[0] == 0


def test_unknown_routes_and_methods_answer_json(hub) -> None:
    r = httpx.get(hub.url + "/nope")
    assert r.status_code == 404 and r.json() == {"error": "no route GET /nope"}
    r = httpx.get(hub.url + "/heartbeat")
    assert r.status_code == 405 and "not allowed" in r.json()["error"]


def test_a_slow_client_gets_408_and_does_not_hold_up_others(hub) -> None:
    hub.cfg.hub.body_timeout_s = 1.0
    from picoctl import config

    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    key = hub.register("gh-01")
    body = _beat("gh-01", 1)
    with socket.create_connection(("127.0.0.1", hub.port)) as s:
        s.sendall(b"POST /heartbeat HTTP/1.1\r\nHost: x\r\nX-Picoctl-Device: gh-01\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        t0 = time.monotonic()
        # meanwhile another device is served at once
        assert _post(hub, "/heartbeat", _beat("gh-01", 2), "gh-01", key).status_code == 200
        assert time.monotonic() - t0 < 0.9
        s.settimeout(5)
        answer = b""
        while b'"error"' not in answer and (chunk := s.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer
    assert _counts(hub)[0] == 1


def _publish_files(hub) -> dict:
    files = {"main.py": b"print('hi')\n", "lib/big.py": bytes(range(256)) * 40}
    hub.publish(hub.build_release("1.1.0", files))
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_artifacts_by_sha256_whole_and_by_range(hub) -> None:
    shas = _publish_files(hub)
    data = bytes(range(256)) * 40
    url = f"{hub.url}/artifacts/{shas['lib/big.py']}"
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == data and r.headers["content-length"] == str(len(data))
    r = httpx.get(url, headers={"Range": "bytes=100-"})
    assert r.status_code == 206 and r.content == data[100:]
    assert r.headers["content-range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    r = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20] and r.headers["content-length"] == "10"
    r = httpx.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = httpx.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}" and "error" in r.json()
    r = httpx.get(url, headers={"Range": "bytes=a-b"})
    assert r.status_code == 400 and "malformed Range" in r.json()["error"]
    r = httpx.get(f"{hub.url}/artifacts/{'0' * 64}")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(f"{hub.url}/artifacts/../../fleet.db")
    assert r.status_code == 404


def test_healthz(hub) -> None:
    r = httpx.get(hub.url + "/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["store"] == "ok"


def test_a_flood_of_refused_requests_logs_a_bounded_number_of_security_events(hub) -> None:
    with httpx.Client(base_url=hub.url) as c:
        for i in range(60):
            assert c.post("/heartbeat", content=_beat("gh-99", i + 1), headers={"X-Picoctl-Device": "gh-99"}).status_code == 403
        time.sleep(1.1)
        assert c.post("/heartbeat", content=_beat("gh-99", 99), headers={"X-Picoctl-Device": "gh-99"}).status_code == 403
    # security events are written after the response; the summary goes with the first one logged
    # once a new second begins, whether that is the last request or one of the flood on a slow machine
    def summarised() -> list[dict] | None:
        events = hub.client.history(kind="security")
        return events if any("more refused requests were not logged" in e["detail"] for e in events) else None

    events = wait_for(summarised, 10, "the summary of the refusals not logged", every=0.05)
    assert 20 <= len(events) <= 41
