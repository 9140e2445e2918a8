"""USB telemetry lines: heartbeat parsing, and posting to the hub's heartbeat endpoint."""

from __future__ import annotations

import json

import pytest

from picoctl import config
from picoctl.commands.init import init_site
from picoctl.errors import BadInput
from picoctl.usb.telemetry import Heartbeat, HeartbeatForwarder, parse_heartbeat
from loopback import Peer, serving

GOOD = {"type": "heartbeat", "id": "pico-e6614c31", "version": "1.2.0", "uptime_s": 42,
        "mem_free": 151232, "readings": {"temp_c": 24.5}}


def line(**changes):
    return json.dumps({**GOOD, **changes})


def test_heartbeat_line_becomes_the_hub_body():
    hb = parse_heartbeat(line())
    assert hb == Heartbeat("pico-e6614c31", "1.2.0", 42, 151232, None, {"temp_c": 24.5})
    assert hb.body() == {"version": "1.2.0", "uptime_s": 42, "mem_free": 151232, "rssi": None,
                         "readings": {"temp_c": 24.5}}
    assert parse_heartbeat("  " + line(readings={}) + "\r\n").readings == {}
    assert parse_heartbeat(line(readings={"pump": True, "mode": "auto", "n": 3})).readings["mode"] == "auto"


@pytest.mark.parametrize("text", [
    "MPY: soft reboot", "", "{not json", json.dumps({"type": "reading", "id": "x", "readings": {}}),
    json.dumps([1, 2]), "Traceback (most recent call last):",
    '{"type": "heartbeat", "x": ' + "[" * 2000 + "]" * 2000 + "}",  # a 4 KiB line (serial_log's cut) nested too deep
])
def test_other_lines_are_not_heartbeats(text):
    assert parse_heartbeat(text) is None


@pytest.mark.parametrize("changes, message", [
    ({"id": ""}, "bad device id"),
    ({"id": "../admin"}, "bad device id"),
    ({"id": 7}, "bad device id"),
    ({"version": ""}, "version must be"),
    ({"uptime_s": -1}, "uptime_s must be"),
    ({"uptime_s": "10"}, "uptime_s must be"),
    ({"uptime_s": True}, "uptime_s must be"),
    ({"mem_free": 1.5}, "mem_free must be an integer"),
    ({"rssi": "strong"}, "rssi must be an integer"),
    ({"readings": [1]}, "readings must map"),
    ({"readings": {"t": "x" * 65}}, "readings must map"),
    ({"readings": {"t": [1]}}, "readings must map"),
])
def test_malformed_heartbeats_are_refused(changes, message):
    with pytest.raises(BadInput, match=message):
        parse_heartbeat(line(**changes))


class Hub(Peer):
    token = ""
    received: list[tuple[str, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.json_body()
        ok = self.headers["Authorization"] == f"Bearer {self.token}"
        known = self.path.startswith("/api/v1/devices/pico-") and self.path.endswith("/heartbeat")
        if ok and known:
            Hub.received.append((self.path, body))
        status = 200 if ok and known else 401 if not ok else 404
        self.answer(status, json.dumps({"ok": True} if status == 200 else {"error": "refused"}).encode())  # the hub's JSON answers


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    """A site whose hub is `Hub`, which records the heartbeats it takes."""
    cfg = config.load(init_site(tmp_path / "site"))
    Hub.token, Hub.received = cfg.read_token(), []
    with serving(Hub) as url:
        monkeypatch.setenv("PICOCTL_HUB_URL", url)
        yield cfg


def forwarded(cfg, *texts: str) -> HeartbeatForwarder:
    """A forwarder that was given `texts` and closed (what it had to send is sent)."""
    fwd = HeartbeatForwarder(cfg)
    try:
        for text in texts:
            fwd(text)
    finally:
        fwd.close()
    return fwd


def test_a_heartbeat_reaches_the_hub(cfg):
    assert forwarded(cfg, line()).sent == 1
    assert Hub.received == [("/api/v1/devices/pico-e6614c31/heartbeat", parse_heartbeat(line()).body())]


def test_refusals_and_unreachable_hub_are_clear_errors(cfg, monkeypatch):
    assert "hub refused the heartbeat of other-1: HTTP 404" in forwarded(cfg, line(id="other-1")).last_error
    cfg.token_file.write_text("wrong-token\n")
    assert "HTTP 401" in forwarded(cfg, line()).last_error
    monkeypatch.setenv("PICOCTL_HUB_URL", "http://127.0.0.1:9")
    assert "hub not reachable at http://127.0.0.1:9" in forwarded(cfg, line()).last_error
    assert Hub.received == []


def test_forwarder_posts_heartbeats_only_and_keeps_going(cfg):
    fwd = HeartbeatForwarder(cfg)
    try:
        for text in ("booting", line(), line(uptime_s=-5), json.dumps({"type": "reading"}), line(uptime_s=52)):
            fwd(text)
    finally:
        fwd.close()
    assert fwd.sent == 2 and [b["uptime_s"] for _, b in Hub.received] == [42, 52]
    assert "uptime_s must be" in fwd.last_error
