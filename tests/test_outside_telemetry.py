"""A hostile board (or a hostile relay in front of one) on a serial port, and a hub that is down or
slow, under `picoctl usb follow` and `usb log`: the console goes on being read, memory and time stay
bounded, each fault is one clear line, no traceback, and nothing is sent that the hub would refuse."""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import Hub
from loopback import Peer, serving
from picoctl import config
from picoctl.errors import BadInput
from picoctl.hub.device_api import heartbeat_fields
from picoctl.hub.http import ApiError, parse_object
from picoctl.protocol import UPTIME_MAX_S
from picoctl.usb import telemetry
from picoctl.usb.telemetry import HeartbeatForwarder, parse_heartbeat

DEVICE = "pico-hostile-1"


def beat(**changes: object) -> str:
    return json.dumps({"type": "heartbeat", "id": DEVICE, "version": "1.0.0", "uptime_s": 1, **changes})


# What a board may print that the hub would refuse, written as the board's own bytes (json.dumps of a
# NaN or of a lone surrogate is what a Python print of such a value gives).
REFUSED = {
    "NaN": beat(uptime_s=math.nan),
    "Infinity": beat(readings={"t": math.inf}),
    "-Infinity": beat(readings={"t": -math.inf}),
    "1e400": beat(uptime_s=1).replace('"uptime_s": 1', '"uptime_s": 1e400'),
    "2**64": beat(mem_free=2**64),
    "an uptime no store holds": beat(uptime_s=2**63 - 1),
    "-2**63-1": beat(rssi=-(2**63) - 1),
    "a 400-digit number": beat(readings={"n": 10**399}),
    "NUL in the version": beat(version="1.0\u0000"),
    "NUL in a reading's name": beat(readings={"t\u0000": 1}),
    "a lone surrogate": beat(readings={"s": "\ud800"}),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_heartbeat_the_hub_would_refuse_is_refused_here_and_never_sent(name: str) -> None:
    text = REFUSED[name]
    with pytest.raises(ApiError):  # the hub's own rule refuses what the board printed
        heartbeat_fields(parse_object(text.encode()))
    with pytest.raises(BadInput, match=f"heartbeat from {DEVICE}") as caught:
        parse_heartbeat(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("text", [beat(), beat(uptime_s=UPTIME_MAX_S, mem_free=-(2**63), readings={"t": 1e308}),
                                  beat(version="é" * 50, readings={"s": "ü" * 64, "b": True})])
def test_a_heartbeat_taken_here_is_one_the_hub_takes(text: str) -> None:
    hb = parse_heartbeat(text)
    assert hb is not None
    heartbeat_fields(parse_object(json.dumps(hb.body(), ensure_ascii=False, allow_nan=False).encode()))


class Board:
    """A pty standing for a board's serial port: the test writes what the board prints."""

    def __init__(self, link: Path) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        link.symlink_to(os.ttyname(self._slave))
        self.port = str(link)
        self.unplugged = False
        os.set_blocking(self.master, False)

    def print(self, data: bytes | str, within_s: float = 30) -> None:
        """Write `data` as the board's output; fails when the host has not read it within `within_s`."""
        data = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        deadline = time.monotonic() + within_s
        while data:
            _, ready, _ = select.select([], [self.master], [], max(0.0, deadline - time.monotonic()))
            assert ready, "the host stopped reading the board's console"
            try:
                data = data[os.write(self.master, data[:4096]):]
            except BlockingIOError:
                continue

    def unplug(self) -> None:
        self.unplugged = True
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    (tmp_path / "ports").mkdir()
    b = Board(tmp_path / "ports" / "pico-hostile")
    yield b
    if not b.unplugged:
        b.unplug()


def _cli(cfg_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(cfg_path), "usb", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            env={**os.environ, **(env or {})})


def _until(proc: subprocess.Popen, words: str, timeout: float = 30) -> str:
    """What `proc` wrote on stderr up to the line holding `words`."""
    said, deadline = "", time.monotonic() + timeout
    while words not in said:
        assert time.monotonic() < deadline and proc.poll() is None, said[-2000:]
        said += proc.stderr.readline()
    return said


def _rss_kib(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1])
    raise AssertionError("no VmHWM")


GARBAGE = [
    bytes(range(256)) * 8,                        # every byte, invalid UTF-8 included
    b"\x1b]0;owned\x07\x1b[2J\x1b[31m\r\r\n",      # terminal escapes: title, clear screen, colour
    b"[bold red]markup[/] [/x] [link=file:///etc/passwd]x[/link]\n",
    b'{"type": "heartbeat", "id": "[/red]", "uptime_s": 1}\n',  # a bad id that reads as rich markup
    b'{"type": "heartbeat", "id": "pico-x", "version": "1", "uptime_s": "[/x]"}\n',
    b'{"type": "heartbeat", "id": "pico-x\x1b[2J"}\n',
    b'{"type": "heartbeat", "x": ' + b"[" * 3000 + b"\n",
    b"{" * 5000 + b"\n",
]


def test_usb_follow_outlasts_a_hostile_board_and_records_only_its_good_heartbeats(hub: Hub, board: Board,
                                                                                 tmp_path: Path) -> None:
    """Garbage, markup, escapes, heartbeats the hub would refuse, a 20 MB flood without a newline and a
    heartbeat too long for a line, then a good heartbeat, then the board is unplugged: the good one is
    in the fleet, nothing else is, memory stays bounded and the follower ends on time, in clean lines."""
    hub.cfg.usb.extra_ports = str(tmp_path / "ports" / "pico-*")
    hub.cfg.usb.poll_s = 0.1
    config.save(hub.cfg, hub.site / "fleet.toml")
    proc = _cli(hub.site / "fleet.toml", "follow", "--seconds", "60", env={"PICOCTL_HUB_URL": hub.url})
    try:
        deadline = time.monotonic() + 30
        while not hub.client.devices() and time.monotonic() < deadline:  # following once a heartbeat lands
            board.print(beat(version="0.0.1") + "\n")
            time.sleep(0.2)
        assert [d["id"] for d in hub.client.devices()] == [DEVICE]
        base = _rss_kib(proc.pid)
        for junk in GARBAGE:
            board.print(junk)
        for text in REFUSED.values():
            board.print(text + "\n")
        board.print(beat(readings={f"r{i}": i for i in range(1500)}) + "\n")  # over serial_log.MAX_LINE
        noise = bytes(c for c in range(256) if c != 0x0A) * 256
        for _ in range(20 * 1024 * 1024 // len(noise)):
            board.print(noise)
        board.print(b"\n")
        deadline = time.monotonic() + 30
        while hub.client.device(DEVICE)["version"] != "9.9.9" and time.monotonic() < deadline:
            board.print(beat(version="9.9.9") + "\n")
            time.sleep(0.2)
        assert hub.client.device(DEVICE)["version"] == "9.9.9"  # the follower still reads the board
        grew = _rss_kib(proc.pid) - base
        board.unplug()
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert grew < 30 * 1024, f"the follower grew by {grew} KiB"
    assert proc.returncode == 0, err[-2000:]
    assert [d["id"] for d in hub.client.devices()] == [DEVICE]
    versions = {h["version"] for h in hub.client.device(DEVICE)["heartbeats"]}
    assert versions <= {"0.0.1", "9.9.9"}, versions
    assert "Traceback" not in err and "unexpected" not in err, err[-3000:]
    assert not any(c < " " and c not in "\t\n" for c in err), repr(err[-2000:])
    assert "[/red]" in err and "'[/x]'" in err, err[-3000:]  # said as the board printed it, not taken as markup
    assert "number 1e400 is out of range" in err and "lone UTF-16 surrogate" in err, err[-3000:]


class Dripping(Peer):
    """A hub that takes the request and then answers a header line every half second, for ever."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        try:
            while True:
                self.wfile.write(b"X-Slow: 1\r\n")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            return


@contextmanager
def silent_hub() -> Iterator[str]:
    """A hub address that never answers a connection: a listening socket whose queue is full, so the
    kernel drops every new SYN, as a hub host that is down on the LAN does."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        try:
            for _ in range(4):  # the queue holds backlog + 1; connects past it hang
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(address)
                fillers.append(s)
            time.sleep(0.2)
            yield f"http://{address[0]}:{address[1]}"
        finally:
            for s in fillers:
                s.close()


@pytest.mark.parametrize("hub_kind", ["dripping", "silent", "refusing"])
def test_usb_log_shows_the_console_at_once_whatever_the_hub_does(hub: Hub, board: Board, hub_kind: str) -> None:
    """Every line reaches the operator as the board prints it while each heartbeat waits on a hub that
    drips its answer, never answers the connection, or refuses it; the hub's fault is one line, and
    the command ends on time."""
    with serving(Dripping) as dripping, silent_hub() as silent:
        url = {"dripping": dripping, "silent": silent, "refusing": "http://127.0.0.1:9"}[hub_kind]
        proc = _cli(hub.site / "fleet.toml", "log", "--port", board.port, "--seconds", "6", env={"PICOCTL_HUB_URL": url})
        try:
            head = _until(proc, ": connected")
            t0 = time.monotonic()  # its --seconds are counted from about here: a busy machine starts it slowly
            for i in range(30):
                board.print(beat(uptime_s=i) + "\n" + f"line {i}\n")
                time.sleep(0.1)
            shown_by = time.monotonic() - t0
            out, err = proc.communicate(timeout=6 + telemetry.POST_S + 15)
            err = head + err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    took = time.monotonic() - t0
    assert [row for row in out.splitlines() if row.startswith("line ")] == [f"line {i}" for i in range(30)]
    assert shown_by < 6 and took < 6 + telemetry.POST_S + 5, (shown_by, took)
    expected = "did not take the heartbeat" if hub_kind == "dripping" else "hub not reachable"
    assert expected in err and err.count(expected) == 1, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


def test_a_forwarder_holds_at_most_its_queue_while_the_hub_drips(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(Dripping) as dripping:
        monkeypatch.setenv("PICOCTL_HUB_URL", dripping)
        fwd = HeartbeatForwarder(hub.cfg)
        t0 = time.monotonic()
        for i in range(1000):
            fwd(beat(uptime_s=i))
        fed = time.monotonic() - t0
        deadline = time.monotonic() + telemetry.POST_S + 10
        while not fwd.last_error and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"did not take the heartbeat of {DEVICE} within {telemetry.POST_S:g} s" in fwd.last_error
        t1 = time.monotonic()
        fwd.close()
        closed = time.monotonic() - t1
    assert fed < 2, fed  # the lines were taken without waiting on the hub
    assert closed < telemetry.POST_S + 1.5, closed
    assert fwd.sent == 0 and fwd.dropped >= 1000 - telemetry.QUEUE - 1

