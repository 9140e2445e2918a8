"""Serial push to a virtual USB Pico (pty + MicroPython unix port), through mpremote's transport."""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from picoctl import release
from picoctl.errors import BadInput, PicoctlError
from picoctl.progress import Progress
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb.push import TMP_SUFFIX, push_files, push_release
from picoctl.sim.board import find_micropython
from picoctl.shipped import PICO_APP
from conftest import pico_flash

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]



def build_release(tmp: Path, version: str, extra: bytes = b"") -> Path:
    src = tmp / f"src-{version}"
    (src / "lib").mkdir(parents=True)
    shutil.copy(PICO_APP, src / "main.py")
    (src / "lib" / "sensors.py").write_text(f"VERSION = {version!r}\n")
    (src / "lib" / "table.bin").write_bytes(os.urandom(20000) + extra)
    out = tmp / f"rel-{version}"
    release.build("pico", version, src, out)
    return out


@pytest.fixture
def board(tmp_path):
    with VirtualPico(pico_flash(tmp_path / "flash", "pico-bench-1", 0.2, app=False)) as vp:
        yield vp


def test_push_release_verifies_resets_and_reads_version(tmp_path, board):
    events = []
    rel = build_release(tmp_path, "1.0.0")
    result = push_release(board.port, rel, Progress("push", events.append))
    flash = board.flash_dir
    assert (result.version, result.device_id, result.verified, result.files) == ("1.0.0", "pico-bench-1", True, 4)
    files = release.read_tar_files(rel / "pico-1.0.0.tar")
    for name, data in files.items():
        assert (flash / name).read_bytes() == data
    assert json.loads((flash / "version.json").read_text()) == {"version": "1.0.0", "target": "pico"}
    assert not list(flash.rglob(f"*{TMP_SUFFIX}"))
    pushed = [e.item for e in events if e.phase == "push" and e.item]
    assert {"main.py", "lib/sensors.py", "lib/table.bin", "version.json"} <= set(pushed)
    assert max(e.done for e in events if e.phase == "push") == result.bytes
    assert [e.phase for e in events if e.phase == "verify" and e.done][-1:] and events[-1].state == "finished"
    assert board.boots >= 3  # power-up, soft reset entering the raw REPL, soft reset back to main.py


def test_push_over_an_older_release_replaces_files(tmp_path, board):
    push_release(board.port, build_release(tmp_path, "1.0.0"), Progress("push"))
    result = push_release(board.port, build_release(tmp_path, "1.1.0"), Progress("push"))
    assert result.version == "1.1.0"
    assert (board.flash_dir / "lib" / "sensors.py").read_text() == "VERSION = '1.1.0'\n"


def test_unplug_mid_push_leaves_old_files_and_says_so(tmp_path, board):
    push_release(board.port, build_release(tmp_path, "1.0.0"), Progress("push"))
    before = {p: p.read_bytes() for p in board.flash_dir.rglob("*") if p.is_file()}
    events = []

    def sink(e):
        events.append(e)
        if e.item == "lib/table.bin" and e.done > 3000 and board.plugged:
            board.unplug()

    with pytest.raises(PicoctlError) as err:
        push_release(board.port, build_release(tmp_path, "2.0.0", os.urandom(30000)), Progress("push", sink))
    message = str(err.value)
    assert "lost the board while pushing lib/table.bin" in message
    assert "old files are in place" in message
    assert events[-1].state == "failed" and events[-1].reason == message
    for p, data in before.items():
        assert p.read_bytes() == data, p
    board.replug()
    assert push_release(board.port, build_release(tmp_path, "2.0.1"), Progress("push")).version == "2.0.1"


def test_failed_verification_names_the_file_and_replaces_nothing(tmp_path, board):
    push_release(board.port, build_release(tmp_path, "1.0.0"), Progress("push"))
    before = {p: p.read_bytes() for p in board.flash_dir.rglob("*") if p.is_file()}

    def corrupt_flash(e):  # a flash write that did not stick, noticed when the board hashes it
        if e.phase == "verify" and e.state == "running" and e.done == 0:
            tmp = board.flash_dir / "lib" / f"sensors.py{TMP_SUFFIX}"
            tmp.write_bytes(tmp.read_bytes().replace(b"1.2.0", b"1.2.9"))

    with pytest.raises(PicoctlError, match=r"lib/sensors.py failed verification on the board .* old files are in place"):
        push_release(board.port, build_release(tmp_path, "1.2.0"), Progress("push", corrupt_flash))
    after = {p: p.read_bytes() for p in board.flash_dir.rglob("*") if p.is_file()}
    assert after == before


def test_push_files_under_a_prefix(board):
    result = push_files(board.port, {"boot.py": b"# boot\n", "ota/agent.py": b"x = 1\n"}, Progress("p"), dest_prefix="/sys")
    assert (board.flash_dir / "sys" / "ota" / "agent.py").read_bytes() == b"x = 1\n"
    assert result.version is None and result.files == 2


def test_bad_inputs_are_refused_clearly(tmp_path, board):
    with pytest.raises(BadInput, match="nothing to push"):
        push_files(board.port, {}, Progress("p"))
    with pytest.raises(BadInput, match="unsafe file name"):
        push_files(board.port, {"../etc/passwd": b"x"}, Progress("p"))
    with pytest.raises(BadInput, match="absolute board path"):
        push_files(board.port, {"a": b"x"}, Progress("p"), dest_prefix="app")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInput, match="folder is empty"):
        push_release(board.port, tmp_path / "empty", Progress("p"))
    src = tmp_path / "pi-src"
    src.mkdir()
    (src / "main.py").write_text("print(1)\n")
    release.build("pi", "1.0.0", src, tmp_path / "pi-rel")
    with pytest.raises(BadInput, match="a pi tar.gz release cannot be pushed over serial"):
        push_release(board.port, tmp_path / "pi-rel", Progress("p"))
    rel = build_release(tmp_path, "3.0.0")
    (rel / "pico-3.0.0.tar").write_bytes(b"tampered")
    with pytest.raises(PicoctlError, match="differs from meta.json"):
        push_release(board.port, rel, Progress("p"))
    events = []
    with pytest.raises(PicoctlError, match="cannot open the serial port"):
        push_files(str(tmp_path / "no-such-port"), {"a": b"x"}, Progress("p", events.append))
    assert events[-1].state == "failed"


def test_a_board_side_error_discards_the_temp_files(tmp_path, board):
    (board.flash_dir / f"main.py{TMP_SUFFIX}").mkdir()  # where main.py's temporary copy goes: its write fails
    with pytest.raises(PicoctlError, match=r"the board refused while pushing main.py .*old files are in place"):
        push_release(board.port, build_release(tmp_path, "1.0.0"), Progress("push"))
    assert [p.name for p in board.flash_dir.rglob(f"*{TMP_SUFFIX}")] == [f"main.py{TMP_SUFFIX}"]  # the folder alone
    assert not [p for p in board.flash_dir.rglob("*") if p.is_file() and p.name != "config.json"]


def test_a_file_where_a_folder_goes_is_refused_before_anything_is_written(tmp_path, board):
    (board.flash_dir / "lib").write_text("a file where the push needs a folder\n")
    with pytest.raises(PicoctlError, match=r"cannot push: /lib is a file on the board, where a folder goes; nothing was"):
        push_release(board.port, build_release(tmp_path, "1.0.0"), Progress("push"))
    assert sorted(p.name for p in board.flash_dir.iterdir()) == ["config.json", "lib"]
    assert (board.flash_dir / "lib").read_text() == "a file where the push needs a folder\n"


SWALLOWS_ONE_CTRL_C = b"""import time
caught = False
while True:
    try:
        print("tick")
        time.sleep(0.05)
    except KeyboardInterrupt:
        if caught:
            raise
        caught = True  # cleans up and carries on, as some apps do on the first Ctrl-C
"""


@contextmanager
def chatty_board(tmp_path: Path, main: bytes) -> Iterator[VirtualPico]:
    """A board running `main`, past its start-up (a Ctrl-C then meets the program, not the boot)."""
    flash = tmp_path / "chatty"
    flash.mkdir()
    (flash / "main.py").write_bytes(main)
    with VirtualPico(flash) as board:
        time.sleep(1.0)
        yield board


def test_push_stops_a_program_that_shrugs_off_the_first_ctrl_c(tmp_path):
    """mpremote alone sends one Ctrl-C and then reads the ticks forever."""
    with chatty_board(tmp_path, SWALLOWS_ONE_CTRL_C) as board:
        result = push_files(board.port, {"lib/x.py": b"X = 1\n"}, Progress("push"))
        assert result.files == 1 and (board.flash_dir / "lib" / "x.py").read_bytes() == b"X = 1\n"


def test_a_program_that_ignores_ctrl_c_is_a_clear_error_not_a_hang(tmp_path):
    ignores = SWALLOWS_ONE_CTRL_C.replace(b"if caught:\n            raise\n", b"")
    with chatty_board(tmp_path, ignores) as board:
        with pytest.raises(PicoctlError, match="keeps running its program through Ctrl-C"):
            push_files(board.port, {"lib/x.py": b"X = 1\n"}, Progress("push"))
        assert not (board.flash_dir / "lib").exists()
