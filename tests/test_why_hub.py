"""Why a board failed, on a real hub: crash records and inventory in heartbeats, reasons in statuses and
rollouts, wireless log posts, the .mpy ABI check of offers; bad input refused without losing anything."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from picoctl.signing import device_mac

TRACEBACK = ('Traceback (most recent call last):\n  File "boot.py", line 141, in <module>\n'
             '  File "main.py", line 12, in pump\n'
             "AttributeError: 'module' object has no attribute 'PWM'\n")
CRASH = {"type": "AttributeError", "message": "'module' object has no attribute 'PWM'", "traceback": TRACEBACK,
         "boot": 7, "reset_cause": "soft"}
FIRMWARE = {"micropython": "1.29.0", "mpy": 0xB06, "board": "Raspberry Pi Pico W with RP2040", "uid": "e6614c311b7e8a2f"}


def _post(hub, path: str, body: dict, key: str) -> httpx.Response:
    raw = json.dumps(body).encode()
    return httpx.post(hub.url + path, content=raw, headers={"X-Picoctl-Device": body["id"],
                                                           "X-Picoctl-Mac": device_mac(key, raw)})


def _beat(device: str, counter: int, **extra: object) -> dict:
    return {"id": device, "counter": counter, "version": "1.0.0", "seq": 0, "uptime_s": 5, "mem_free": 1000,
            "rssi": -50, "readings": {}, "boots": 8, "reset_cause": "soft", "firmware": FIRMWARE,
            "last_error": None} | extra


def _events(hub, kind: str) -> list[dict]:
    return [e for e in hub.client.history() if e["kind"] == kind]


def test_a_heartbeat_carries_the_crash_record_and_inventory_until_superseded(hub) -> None:
    key = hub.register("gh-01")
    assert _post(hub, "/heartbeat", _beat("gh-01", 1, last_error=CRASH), key).status_code == 200
    d = hub.client.device("gh-01")
    assert d["last_error"]["type"] == "AttributeError" and d["last_error"]["where"] == "main.py:12"
    assert d["error_summary"] == "AttributeError: 'module' object has no attribute 'PWM' (main.py:12)"
    assert (d["boots"], d["reset_cause"]) == (8, "soft")
    assert d["firmware"]["mpy_abi"] == "6.3" and d["firmware"]["uid"] == FIRMWARE["uid"]
    assert hub.client.devices()[0]["error_summary"] == d["error_summary"]
    assert _post(hub, "/heartbeat", _beat("gh-01", 2, last_error=CRASH), key).status_code == 200
    assert len(_events(hub, "device_error")) == 1  # the same record again is no new event
    assert _post(hub, "/heartbeat", _beat("gh-01", 3, last_error=None), key).status_code == 200
    assert hub.client.device("gh-01")["last_error"] is None


@pytest.mark.parametrize("text", ["\x1b[2J\x1b]0;owned\x07red", "[bold]markup[/] \x9b31m\u2028"])
def test_control_characters_and_bad_bytes_are_stored_escaped(hub, text: str) -> None:
    key = hub.register("gh-01")
    crash = CRASH | {"message": text, "traceback": text + "\nline two"}
    assert _post(hub, "/heartbeat", _beat("gh-01", 1, last_error=crash), key).status_code == 200
    err = hub.client.device("gh-01")["last_error"]
    for stored in (err["message"], err["traceback"]):
        assert not any(ord(ch) < 32 and ch != "\n" or 0x7F <= ord(ch) <= 0x9F or ch == "\u2028" for ch in stored)
    assert "\\x1b" in err["message"] or "\\x9b" in err["message"]
    assert err["traceback"].endswith("\nline two")


def test_a_crash_record_that_is_not_text_is_a_400_and_the_next_heartbeat_counts(hub) -> None:
    key = hub.register("gh-01")
    r = _post(hub, "/heartbeat", _beat("gh-01", 1, last_error=CRASH | {"message": "bad \udcff byte"}), key)
    assert r.status_code == 400 and "surrogate" in r.json()["error"]
    assert _post(hub, "/heartbeat", _beat("gh-01", 2, last_error=CRASH), key).status_code == 200
    assert hub.client.device("gh-01")["last_error"]["message"] == CRASH["message"]


def test_an_oversized_crash_record_is_refused_with_413_and_the_next_heartbeat_counts(hub) -> None:
    key = hub.register("gh-01")
    r = _post(hub, "/heartbeat", _beat("gh-01", 1, last_error=CRASH | {"traceback": "x" * 5000}), key)
    assert r.status_code == 413 and "traceback" in r.json()["error"]
    assert _post(hub, "/heartbeat", _beat("gh-01", 2), key).status_code == 200
    assert hub.client.device("gh-01")["status"] == "online"


@pytest.mark.parametrize("bad", [{"last_error": "boom"}, {"last_error": {"message": "no type"}},
                                 {"firmware": {"mpy": "6"}}, {"boots": -1.5}, {"last_error": CRASH | {"boot": True}}])
def test_malformed_diagnostics_are_a_400(hub, bad: dict) -> None:
    key = hub.register("gh-01")
    r = _post(hub, "/heartbeat", _beat("gh-01", 1, **bad), key)
    assert r.status_code == 400, r.text


def _db(hub) -> sqlite3.Connection:
    return sqlite3.connect(hub.cfg.data_dir / "fleet.db")


def test_log_request_rides_on_the_heartbeat_answer_and_lines_are_kept(hub) -> None:
    key = hub.register("gh-01")
    assert "log_s" not in _post(hub, "/heartbeat", _beat("gh-01", 1), key).json()
    hub.client.request_log("gh-01", seconds=30)
    answer = _post(hub, "/heartbeat", _beat("gh-01", 2), key)
    assert 0 < answer.json()["log_s"] <= 30 and answer.headers["X-Picoctl-Mac"] == device_mac(key, answer.content)
    r = _post(hub, "/logs", {"id": "gh-01", "counter": 3, "lines": [[5000, "old line"], [0, "\x1b[31mnew\x1b[0m"]]}, key)
    assert r.status_code == 200 and 0 < r.json()["log_s"] <= 30
    got = hub.client.device_logs("gh-01")
    assert [x["line"] for x in got["lines"]] == ["old line", "\\x1b[31mnew\\x1b[0m"]
    assert got["lines"][1]["at"] - got["lines"][0]["at"] == pytest.approx(5.0, abs=0.5)
    assert hub.client.device_logs("gh-01", after=got["lines"][0]["id"])["lines"][0]["line"].endswith("[0m")


@pytest.mark.parametrize("case", ["huge_body", "long_line", "many_lines"])
def test_oversized_log_posts_are_413_and_heartbeats_go_on(hub, case: str) -> None:
    key = hub.register("gh-01")
    lines = {"huge_body": [[0, "y" * 200]] * 60, "long_line": [[0, "z" * 300]], "many_lines": [[0, "a"]] * 65}[case]
    r = _post(hub, "/logs", {"id": "gh-01", "counter": 1, "lines": lines}, key)
    assert r.status_code == 413, r.text
    assert _post(hub, "/heartbeat", _beat("gh-01", 2), key).status_code == 200
    assert _db(hub).execute("SELECT COUNT(*) FROM device_logs").fetchone()[0] == 0


def test_log_posts_are_authenticated(hub) -> None:
    hub.register("gh-01")
    r = _post(hub, "/logs", {"id": "gh-01", "counter": 1, "lines": [[0, "forged"]]}, "00" * 32)
    assert r.status_code == 401
    assert hub.client.device_logs("gh-01")["lines"] == []


def test_a_log_request_for_an_unknown_device_or_a_bad_window_is_refused(hub) -> None:
    hub.register("gh-01")
    from picoctl.client import HubError

    with pytest.raises(HubError) as e:
        hub.client.request_log("gh-99")
    assert e.value.status == 404
    with pytest.raises(HubError) as e:
        hub.client.request_log("gh-01", seconds=100000)
    assert e.value.status == 400


def _check(hub, device: str, counter: int, key: str) -> dict:
    r = _post(hub, "/check", {"id": device, "counter": counter, "type": "picow", "version": "1.0.0", "seq": 0,
                              "nonce": "ab" * 16}, key)
    assert r.status_code == 200, r.text
    return r.json()["offer"]


def test_a_rolled_back_canary_names_itself_and_its_error_in_the_halt_and_the_rollout(hub) -> None:
    hub.publish(hub.build_release("1.0.0", {"main.py": b"print(1)\n"}))
    hub.publish(hub.build_release("1.1.0", {"main.py": b"print(2)\n"}))
    key = hub.register("gh-03", channel="canary")
    assert _post(hub, "/heartbeat", _beat("gh-03", 1), key).status_code == 200
    ro = hub.client.start_rollout("picow", "1.1.0", [{"name": "canary", "channel": "canary"}], 1, 0)
    offer = _check(hub, "gh-03", 2, key)
    r = _post(hub, "/deploy/status", {"id": "gh-03", "counter": 3, "seq": offer["seq"], "version": "1.1.0",
                                      "from_version": "1.0.0", "phase": "rolled_back",
                                      "detail": "not confirmed in 3 boots", "error": CRASH}, key)
    assert r.status_code == 200, r.text
    halted = hub.client.rollout(ro["id"])
    why = "gh-03 rolled_back: AttributeError: 'module' object has no attribute 'PWM' (main.py:12)"
    assert halted["state"] == "halted" and why in halted["reason"]
    assert [(f["device_id"], f["reason"]) for f in halted["failures"]] == [("gh-03", why.removeprefix("gh-03 "))]
    assert halted["failures"][0]["error"]["traceback"] == TRACEBACK
    assert hub.client.device("gh-03")["last_error"]["type"] == "AttributeError"
    status = [e for e in hub.client.history(device="gh-03") if e["kind"] == "deploy_status"][-1]
    assert "AttributeError" in status["detail"]


def test_a_release_for_another_mpy_version_is_never_offered_and_says_why(hub) -> None:
    old_mpy = b"M\x05\x00\x1f" + b"\x00" * 12  # a prebuilt .mpy of format version 5 (MicroPython 1.12-1.18)
    hub.publish(hub.build_release("1.0.0", {"main.py": b"print(1)\n"}))
    rel = hub.build_release("1.1.0", {"main.py": b"import lib\n", "lib.mpy": old_mpy})
    assert json.loads((rel / "meta.json").read_text())["mpy_version"] == 5
    hub.publish(rel)
    key = hub.register("gh-01", channel="canary")
    legacy = hub.register("gh-02", channel="canary")
    assert _post(hub, "/heartbeat", _beat("gh-01", 1), key).status_code == 200  # loads .mpy v6.3
    assert _post(hub, "/heartbeat", _beat("gh-02", 1, firmware=FIRMWARE | {"mpy": 5}), legacy).status_code == 200
    ro = hub.client.start_rollout("picow", "1.1.0", [{"name": "canary", "channel": "canary"}], 0, 0)
    for counter in (2, 3):
        assert _check(hub, "gh-01", counter, key) is None
    assert _check(hub, "gh-02", 2, legacy)["mpy_version"] == 5  # the board that loads it gets it
    refused = [e for e in hub.client.history(device="gh-01") if e["kind"] == "offer"]
    assert [e["result"] for e in refused] == ["refused"]
    assert "release built for .mpy v5, the board loads .mpy v6.3" in refused[0]["detail"]
    dev = next(d for d in hub.client.devices() if d["id"] == "gh-01")
    assert dev["offer"]["phase"] == "failed" and "mpy v5" in dev["offer"]["detail"]
    failure = hub.client.rollout(ro["id"])["failures"][0]
    assert failure["device_id"] == "gh-01" and failure["reason"].startswith("failed: not offered: release built")


def test_release_build_records_the_mpy_version_it_compiled_for(hub, tmp_path) -> None:
    from picoctl import release

    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("import lib\n")
    (src / "lib.py").write_text("X = 1\n")
    meta = release.build("picow", "1.2.0", src, tmp_path / "out", mpy=True)
    assert meta["mpy_version"] == 6
    plain = release.build("picow", "1.2.1", src, tmp_path / "plain")
    assert "mpy_version" not in plain
