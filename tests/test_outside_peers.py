"""Peers reading back what picoctl wrote, and picoctl reading what they wrote: the real mpremote CLI.

After `usb push` to a virtual Pico (a pty and the MicroPython unix port), `mpremote fs` must list,
hash and copy back exactly the files and bytes picoctl wrote (binary, empty, nested, spaces,
quotes, unicode), with no temporary file left; what mpremote writes, picoctl must read (the board's
version and id) and push over, or refuse in words when mpremote left a folder where a file goes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from picoctl.errors import PicoctlError
from picoctl.progress import Progress
from picoctl.sim.board import find_micropython
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.usb.push import TMP_SUFFIX, push_files, read_identity

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]

FILES = {"bin/all-bytes.bin": bytes(range(256)) * 40, "empty.txt": b"", "a/b/c/deep.txt": b"deep\n",
         "my file.txt": b"spaces\n", "données/é ü.txt": "unicodé\n".encode(), "it's \"quoted\".txt": b"q",
         "lib/crlf.py": b"x = 1\r\n", "nul.bin": b"\0" * 1000, "main.py": b"print('hi')\n"}


def mpremote(port: str, *args: str) -> bytes:
    """stdout of `mpremote connect PORT resume ARGS` (resume: no soft reset between commands)."""
    run = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "resume", *args],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, (args, run.stdout[-500:], run.stderr[-500:])
    return run.stdout


@pytest.fixture
def board(tmp_path: Path) -> Iterator[VirtualPico]:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"id": "pico-peer-1"}))
    with VirtualPico(flash) as vp:
        yield vp


def test_mpremote_reads_back_every_file_and_byte_picoctl_pushed(tmp_path: Path, board: VirtualPico) -> None:
    push_files(board.port, FILES, Progress("push"))
    back = tmp_path / "back"
    mpremote(board.port, "fs", "cp", "-r", ":", str(back))
    got = {p.relative_to(back).as_posix(): p.read_bytes() for p in back.rglob("*") if p.is_file()}
    assert got.pop("config.json") == json.dumps({"id": "pico-peer-1"}).encode()
    assert got == FILES  # the same names and bytes, and no temporary file beside them
    listed = mpremote(board.port, "fs", "ls", ":a/b/c").decode()
    assert "deep.txt" in listed and TMP_SUFFIX not in listed
    sums = mpremote(board.port, "fs", "sha256sum", ":bin/all-bytes.bin", ":my file.txt", ":empty.txt").decode()
    for name in ("bin/all-bytes.bin", "my file.txt", "empty.txt"):
        assert hashlib.sha256(FILES[name]).hexdigest() in sums, (name, sums)
    assert mpremote(board.port, "fs", "cat", ":données/é ü.txt").endswith("unicodé\n".encode())


def test_picoctl_reads_and_replaces_what_mpremote_wrote(tmp_path: Path, board: VirtualPico) -> None:
    up = tmp_path / "up"
    up.mkdir()
    (up / "version.json").write_bytes(b'{"version": "2.0.0", "target": "pico"}\r\n')
    (up / "config.json").write_text(json.dumps({"id": "pico-by-mpremote", "extra": [1, 2]}, indent=4))
    (up / "old.py").write_text("OLD = True\n")
    mpremote(board.port, "fs", "cp", str(up / "version.json"), str(up / "config.json"), str(up / "old.py"), ":")
    assert read_identity(board.port) == ("2.0.0", "pico-by-mpremote")
    push_files(board.port, {"old.py": b"OLD = False\n"}, Progress("push"))
    assert mpremote(board.port, "fs", "cat", ":old.py").endswith(b"OLD = False\n")


@pytest.mark.parametrize("made,pushed", [("lib/x.py", "lib/x.py"), ("lib", "lib/x.py"), ("zlib/x.py", "zlib/x.py")],
                         ids=["folder-where-a-file-goes", "file-where-a-folder-goes", "folder-where-a-file-goes-last"])
def test_a_push_over_what_mpremote_left_in_the_way_is_refused_and_keeps_the_board(tmp_path: Path, board: VirtualPico,
                                                                                 made: str, pushed: str) -> None:
    if made == "lib":
        (tmp_path / "lib").write_text("not a folder\n")
        mpremote(board.port, "fs", "cp", str(tmp_path / "lib"), ":lib")
    else:
        mpremote(board.port, "fs", "mkdir", f":{made.split('/')[0]}")
        mpremote(board.port, "fs", "mkdir", f":{made}")
    with pytest.raises(PicoctlError, match=f"cannot push: /{made} is a (folder|file) on the board.*; nothing was changed"):
        push_files(board.port, {pushed: b"y = 2\n", "main.py": b"print('new')\n"}, Progress("push"))
    assert not list(board.flash_dir.rglob(f"*{TMP_SUFFIX}"))
    assert not (board.flash_dir / "main.py").exists()  # all or nothing: the other file did not go in either
