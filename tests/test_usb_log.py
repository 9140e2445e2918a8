"""The serial log follows the virtual Pico's console across a soft reset and a re-plug."""

from __future__ import annotations

import os
import time

import pytest
import serial

from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb.serial_log import SerialLog
from picoctl.usb.telemetry import parse_heartbeat
from picoctl.sim.board import find_micropython
from conftest import pico_flash
from waiting import wait_for

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]



def soon(pred, what: str) -> None:
    """`pred()` holds within 5 s (polled every 20 ms: the log's buffer holds only its last 20 lines)."""
    wait_for(pred, 5.0, what, every=0.02)


@pytest.fixture
def board(tmp_path):
    with VirtualPico(pico_flash(tmp_path / "flash", "pico-log-1", version="1.4.0")) as vp:
        yield vp


def boots(lines: list[str]) -> int:
    return sum(1 for line in lines if '"type": "boot"' in line)


def test_log_reads_telemetry_and_survives_reset_and_replug(board):
    status, seen = [], []  # every line, beside the log's own bounded buffer
    with SerialLog(board.port, maxlen=20, on_line=seen.append, on_status=lambda up, why: status.append(up)) as log:
        # Output before the port is opened is lost, as on a board: wait for a periodic heartbeat.
        soon(lambda: any(parse_heartbeat(x) for x in log.snapshot()), "a heartbeat")
        booted = boots(seen)
        hb = next(h for h in map(parse_heartbeat, log.snapshot()) if h)
        assert (hb.device_id, hb.version) == ("pico-log-1", "1.4.0") and hb.mem_free > 0
        soon(lambda: any(h and 23 < h.readings.get("temp_c", 0) < 27 for h in map(parse_heartbeat, log.snapshot())), "a reading")

        with serial.Serial(os.path.realpath(board.port), 115200, timeout=1) as other:
            other.write(b"\x03")  # Ctrl-C stops main.py, Ctrl-D at the REPL soft-resets the board
            soon(lambda: any("KeyboardInterrupt" in x for x in log.snapshot()), "the KeyboardInterrupt")
            other.write(b"\x04")
        soon(lambda: any("soft reboot" in x for x in log.snapshot()), "the soft reboot")
        soon(lambda: boots(seen) == booted + 1, "one more boot line")
        assert log.connects == 1  # a reset keeps the port

        board.unplug()
        soon(lambda: not log.connected, "the port gone")
        time.sleep(0.3)
        board.replug()
        soon(lambda: log.connects == 2 and log.connected, "the port back")
        soon(lambda: parse_heartbeat(log.snapshot()[-1]) is not None, "a heartbeat after the re-plug")
        soon(lambda: len(log.lines) == 20 and boots(log.snapshot()) == 0, "the oldest lines gone (the buffer is bounded)")
    assert status[:3] == [True, False, True] and not log.connected


def test_log_waits_for_a_board_not_yet_plugged(tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("import time\nwhile True:\n    print('hello from main')\n    time.sleep(0.05)\n")
    vp = VirtualPico(flash)
    try:
        with SerialLog(vp.port, retry_s=0.05) as log:
            time.sleep(0.2)
            assert not log.connected and log.connects == 0
            vp.replug()
            soon(lambda: "hello from main" in log.snapshot(), "main.py's line")
    finally:
        vp.stop()


def test_usb_log_into_a_pipe_keeps_board_lines_whole_and_escapes_control_sequences(tmp_path, capsys):
    from picoctl.cli import main

    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(
        "import time\ntime.sleep(1.5)\n"
        "print('L' * 200)\nprint('\\x1b]0;owned\\x07title')\nprint('\\x1b[2Jcleared')\nprint('done')\n"
        "while True:\n    time.sleep(1)\n")
    with VirtualPico(flash) as vp:
        assert main(["usb", "log", "--port", vp.port, "--no-hub", "--seconds", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "L" * 200 in out
    assert "\\x1b]0;owned\\x07title" in out and "\\x1b[2Jcleared" in out
    assert not any("\x1b" in line for line in out)
