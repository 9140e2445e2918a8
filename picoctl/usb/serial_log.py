"""Follow a board's serial console: a reader thread, a bounded buffer of lines, reconnection.

The port is reopened (its link resolved again) whenever it fails or disappears, so the log survives
the board resetting or being unplugged and plugged back in. Callbacks run on the reader thread.

A log someone is looking at claims the port (port_claim.claim) for each connection; the background
follower (`gives_way=True`) holds it only while no picoctl operation wants it.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Callable

import serial

from ..errors import PicoctlError
from . import SERIAL_BAUD, port_claim

MAX_LINE = 4096  # a line longer than this is cut, so a board printing without newlines cannot eat memory
READ_S = 0.1  # serial read timeout: how often a quiet port checks for stop()
YIELD_CHECK_S = 0.02  # how often a follower that gives way asks whether an operation wants the port
CLAIM_WAIT_S = 1.0  # a claiming log waits this long per attempt for a port another operation has


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09}


def shown(line: str) -> str:
    """A board's line as it may reach an operator's terminal: control characters (escape sequences
    that set the title or clear the screen, bells, stray carriage returns) written as `\\x1b`."""
    return line.translate(_CONTROL)


class SerialLog:
    """Reads `port` on a thread until `stop()`; `lines` holds the last `maxlen` lines."""

    def __init__(self, port: str, on_line: Callable[[str], None] | None = None, maxlen: int = 2000,
                 on_status: Callable[[bool, str], None] | None = None, retry_s: float = 0.2,
                 who: str = "picoctl usb log", gives_way: bool = False) -> None:
        self.port = port
        self.who = who
        self.gives_way = gives_way
        self.on_line = on_line
        self.on_status = on_status
        self.retry_s = retry_s
        self.lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.connected = False
        self.why = ""  # why the port could not be opened, as last said
        self.connects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"serial-log {port}", daemon=True)

    def __enter__(self) -> "SerialLog":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def snapshot(self) -> list[str]:
        return list(self.lines)

    def _status(self, connected: bool, why: str) -> None:
        """Say a change of the link, and before its first connection each new reason it cannot be had."""
        if connected != self.connected or (not self.connects and why != self.why):
            self.connected, self.why = connected, why
            if self.on_status:
                self.on_status(connected, why)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.lines.append(line)
        if self.on_line:
            self.on_line(line)

    def _run(self) -> None:
        hold = port_claim.FollowerHold(self.port) if self.gives_way else None
        waiting = ""  # why the port could not be claimed, last time
        try:
            while not self._stop.is_set():
                try:
                    if hold is None:
                        with port_claim.claim(self.port, self.who, timeout=CLAIM_WAIT_S):
                            waiting = ""
                            self._follow(lambda: False)
                    elif hold.take():
                        waiting = ""
                        try:
                            self._follow(hold.wanted)
                        finally:
                            hold.release()
                    else:
                        self._status(False, "given way to another picoctl command")
                except PicoctlError as exc:
                    if str(exc) != waiting and self.on_status:  # said once per cause, not per attempt
                        self.on_status(False, str(exc))
                    waiting = str(exc)
                self._stop.wait(self.retry_s)
        finally:
            if hold is not None:
                hold.close()
        if self.connected:
            self._status(False, "stopped")

    def _follow(self, give_way: Callable[[], bool]) -> None:
        """One connection: read lines until stopped, the port fails, or `give_way()` says to."""
        try:
            conn = serial.Serial(os.path.realpath(self.port), SERIAL_BAUD,
                                 timeout=YIELD_CHECK_S if self.gives_way else READ_S)
        except (serial.SerialException, OSError) as exc:
            self._status(False, str(exc))
            return
        self.connects += 1
        self._status(True, "connected")
        pending, asked = b"", time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() - asked >= YIELD_CHECK_S:
                    asked = time.monotonic()
                    if give_way():
                        self._status(False, "given way to another picoctl command")
                        break
                chunk = conn.read(conn.in_waiting or 1)
                if not chunk:
                    continue
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._emit(raw)
                if len(pending) > MAX_LINE:
                    self._emit(pending[:MAX_LINE])
                    pending = pending[MAX_LINE:]
        except (serial.SerialException, OSError) as exc:
            self._status(False, f"disconnected: {exc}")
        finally:
            if pending:
                self._emit(pending)
            try:
                conn.close()
            except (serial.SerialException, OSError):
                pass
