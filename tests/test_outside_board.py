"""A USB board's flash from outside: full (a small tmpfs as the virtual Pico's flash) and a push
SIGKILLed at a sweep of instants.

A push onto a full flash is refused naming the file and saying, in words, that no space is left;
the board keeps its old files whole and no temporary file stays. A `picoctl usb push` killed at
any instant leaves every file under its own name whole (the old bytes or the new, never a mix), and
the next push completes, removing the temporary files the killed one left and saying so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import test_outside_disks
from picoctl.errors import PicoctlError
from picoctl.progress import Progress
from picoctl.sim.board import find_micropython
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb.push import TMP_SUFFIX, push_files
from test_outside_disks import SmallDisk

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]
disk = test_outside_disks.disk  # the fixture: a small tmpfs
OLD = {"main.py": b"print('old')\n", "lib/table.bin": b"\x01" * 50_000}


def _new(size: int) -> dict[str, bytes]:
    return {"main.py": b"print('new')\n", "lib/table.bin": os.urandom(size), "lib/extra.py": b"X = 1\n"}


def _temps(flash: Path) -> list[Path]:
    return [p for p in flash.rglob(f"*{TMP_SUFFIX}")]


@pytest.fixture
def board_on(disk: SmallDisk) -> Iterator[tuple[VirtualPico, SmallDisk]]:
    (disk.path / "config.json").write_text(json.dumps({"id": "pico-full-1"}))
    with VirtualPico(disk.path) as vp:
        push_files(vp.port, OLD, Progress("push"))
        yield vp, disk


def test_a_push_onto_a_full_flash_is_refused_in_words_and_keeps_the_old_files(board_on) -> None:
    board, disk = board_on
    for free in (0, 16 << 10, 40 << 10, 200 << 10):
        disk.fill(free)
        with pytest.raises(PicoctlError, match=r"No space left on device\).*the board's old files are in place"):
            push_files(board.port, _new(400_000), Progress("push"))
        for name, data in OLD.items():
            assert (disk.path / name).read_bytes() == data
        assert not _temps(disk.path) and not (disk.path / "lib" / "extra.py").exists()
        disk.drain()
    push_files(board.port, _new(400_000), Progress("push"))
    assert (disk.path / "main.py").read_bytes() == b"print('new')\n" and not _temps(disk.path)


def test_a_push_killed_at_any_instant_leaves_every_file_whole(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"id": "pico-kill-1"}))
    with VirtualPico(flash) as board:
        push_files(board.port, OLD, Progress("push"))
        new = _new(120_000)
        src = tmp_path / "src"
        for name, data in new.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        cmd = [sys.executable, "-m", "picoctl", "usb", "push", str(src), "--port", board.port]
        started = time.monotonic()
        assert subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
        whole_s = time.monotonic() - started
        push_files(board.port, OLD, Progress("push"))
        for n in range(6):
            victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                victim.wait(whole_s * (n + 0.5) / 6)
            except subprocess.TimeoutExpired:
                victim.send_signal(signal.SIGKILL)
            victim.wait()
            for name in new:
                got = (flash / name).read_bytes() if (flash / name).exists() else None
                assert got in (OLD.get(name), new[name]), f"{name} is neither the old file nor the new one"
            left = len(_temps(flash))
            again = push_files(board.port, OLD, Progress("push"))  # the next push completes over whatever it left
            assert (flash / "main.py").read_bytes() == OLD["main.py"] and not _temps(flash)
            assert again.leftovers == left  # and says how many temporary files it removed
