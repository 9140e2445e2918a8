"""The virtual Pico itself: plugging, soft resets and unplugging never leave a process or a hang."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from picoctl.sim.board import find_micropython
from picoctl.sim.virtual_pico import RAW_BANNER, VirtualPico

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]

UNPLUG_BOUND_S = 10


def interpreters_of(flash: Path) -> list[int]:
    """Pids of this process's children running an interpreter on `flash` (its path is in their argv)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and str(flash).encode() in argv:
            found.append(int(entry.name))
    return found


def read_until(fd: int, marker: bytes, timeout: float = 10) -> bytes:
    got, deadline = b"", time.monotonic() + timeout
    while marker not in got:
        assert time.monotonic() < deadline, f"no {marker!r} from the board within {timeout} s: {got[-200:]!r}"
        try:
            got += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.005)
    return got


def unplug_within_bound(board: VirtualPico) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            board.unplug()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(UNPLUG_BOUND_S)
    assert not t.is_alive(), f"unplug did not return within {UNPLUG_BOUND_S} s"
    assert not errors, errors[0]


def test_unplugging_during_soft_resets_leaves_no_interpreter_and_never_hangs(tmp_path: Path) -> None:
    """The bridge restarts the interpreter on a soft reset; an unplug racing it must still end it."""
    flash = tmp_path / "flash"
    board = VirtualPico(flash)
    try:
        for n in range(60):
            board.replug()
            fd = os.open(board.pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                os.write(fd, b"\r\x03\x01")
                read_until(fd, RAW_BANNER + b">")
                os.write(fd, b"\x04")  # an empty raw-REPL line: soft reset
                time.sleep((n % 12) * 0.001)  # unplug at a spread of instants in the restart
                unplug_within_bound(board)
            finally:
                os.close(fd)
            assert interpreters_of(flash) == [], f"an interpreter outlived unplug (round {n})"
    finally:
        board.stop()


def test_a_large_write_waits_for_a_slow_host_instead_of_being_lost(tmp_path: Path) -> None:
    """100 KB from one print, read by a host that pauses first: a board with the port open keeps it all."""
    with VirtualPico(tmp_path / "flash") as board:
        fd = os.open(board.pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            os.write(fd, b"\r\x03\x01")
            read_until(fd, RAW_BANNER + b">")
            os.write(fd, b"print('x' * 100000); print('end')\x04")
            time.sleep(1.5)  # the host is busy: three times the bridge's wait for a reader
            got = read_until(fd, b"end", timeout=20)
        finally:
            os.close(fd)
    assert got.count(b"x") == 100000


def test_ctrl_c_while_the_board_starts_stops_main_py_without_a_host_side_traceback(tmp_path: Path) -> None:
    """A Ctrl-C at power-up reached the unix port's CPython launcher, which printed a CPython traceback."""
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    board = VirtualPico(flash)
    try:
        for n in range(15):
            board.replug()
            fd = os.open(board.pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                os.write(fd, b"\r\x03")  # at once: the interpreter is still starting
                got = read_until(fd, b">>> ")
            finally:
                os.close(fd)
            assert b"micropython_unix" not in got and b"most recent call last" not in got, (n, got)
            unplug_within_bound(board)
    finally:
        board.stop()
