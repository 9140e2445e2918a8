"""A hostile serial peer: between `usb push` and the virtual Pico sits a relay on its own pty that,
on cue, answers garbage, falls silent or floods the host. Every push ends with a clear PicoctlError
within a bounded time, and the board's files keep their old bytes; `usb log` follows a flood in
bounded lines and memory and stops at once."""

from __future__ import annotations

import os
import select
import shutil
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from picoctl import release
from picoctl.errors import PicoctlError
from picoctl.progress import Progress, ProgressEvent
from picoctl.sim.board import find_micropython
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb.push import push_release

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]

APP = Path(__file__).resolve().parents[1] / "device_code" / "pico" / "main.py"
BOUND_S = 45  # the longest a push may take to give up on a hostile peer (push.ANSWER_S and a margin)


class Relay:
    """A pty (`port`) whose bytes go to and from `board_port` while `mode` is "relay"; "silent" drops
    both ways, "flood" drops the board's and writes garbage to the host without a pause, "garbage"
    answers every write of the host with garbage instead of passing it on."""

    def __init__(self, board_port: str) -> None:
        self.mode = "relay"
        self.noise = bytes(range(256)) * 4  # what "flood" and "garbage" send
        self._board = os.open(board_port, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._board)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self._running:
            ready, _, _ = select.select([self._board, self._master], [], [], 0.01)
            try:
                if self.mode == "flood":
                    os.write(self._master, self.noise)
                for fd in ready:
                    data = os.read(fd, 4096)
                    if self.mode == "relay":
                        os.write(self._master if fd == self._board else self._board, data)
                    elif self.mode == "garbage" and fd == self._master:
                        os.write(self._master, self.noise[: len(data) * 3])
            except BlockingIOError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=5)
        for fd in (self._board, self._master, self._slave):
            os.close(fd)


def build_release(tmp: Path, version: str, size: int) -> Path:
    src = tmp / f"src-{version}"
    (src / "lib").mkdir(parents=True)
    shutil.copy(APP, src / "main.py")
    (src / "lib" / "table.bin").write_bytes(os.urandom(size))
    release.build("pico", version, src, tmp / f"rel-{version}")
    return tmp / f"rel-{version}"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[VirtualPico, Relay]]:
    with VirtualPico(tmp_path / "flash") as board:
        push_release(board.port, build_release(tmp_path, "1.0.0", 100), Progress("push"))
        relay = Relay(board.port)
        try:
            yield board, relay
        finally:
            relay.close()


def _files(flash: Path) -> dict[str, bytes]:
    return {str(p.relative_to(flash)): p.read_bytes() for p in flash.rglob("*")
            if p.is_file() and not p.name.endswith(release.PUSH_TMP_SUFFIX)}


@pytest.mark.parametrize("mode,when", [("garbage", "start"), ("flood", "start"), ("silent", "push"),
                                       ("flood", "push"), ("garbage", "push"), ("flood", "verify")])
def test_a_hostile_peer_ends_the_push_clearly_and_in_time(tmp_path: Path, rig, mode: str, when: str) -> None:
    board, relay = rig
    before = _files(board.flash_dir)
    if when == "start":
        relay.mode = mode

    def cue(event: ProgressEvent) -> None:
        if event.phase == when and (when == "verify" or event.done > 3000):
            relay.mode = mode

    new = build_release(tmp_path, "2.0.0", 60000)
    t0 = time.monotonic()
    with pytest.raises(PicoctlError) as err:
        push_release(relay.port, new, Progress("push", cue))
    took = time.monotonic() - t0
    message = str(err.value)
    assert took < BOUND_S, (took, message)
    assert "Traceback" not in message and "\n" not in message and relay.port in message, message
    assert _files(board.flash_dir) == before
    if when != "start":
        assert "old files are in place" in message, message


def test_usb_log_follows_a_flooding_peer_within_bounds_and_stops_at_once(rig) -> None:
    from picoctl.usb.serial_log import MAX_LINE, SerialLog, shown

    _board, relay = rig
    relay.noise = bytes(c for c in range(256) if c != 0x0A) * 4  # no line ever ends
    relay.mode = "flood"
    with SerialLog(relay.port, maxlen=100) as log:
        deadline = time.monotonic() + 30
        while len(log.lines) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        log.stop()
        assert time.monotonic() - t0 < 3
        lines = log.snapshot()
    assert len(lines) == 100 and all(len(line) <= MAX_LINE for line in lines)
    assert not any(c < " " and c != "\t" for line in lines for c in shown(line))
