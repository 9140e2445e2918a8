"""Follow a board's serial console: a reader thread, a bounded buffer of lines, reconnection.

The port is reopened (its link resolved again) whenever it fails or disappears, so the log survives
the board resetting or being unplugged and plugged back in. Callbacks run on the reader thread.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import Callable

import serial

BAUD = 115200
MAX_LINE = 4096  # a line longer than this is cut, so a board printing without newlines cannot eat memory


class SerialLog:
    """Reads `port` on a thread until `stop()`; `lines` holds the last `maxlen` lines."""

    def __init__(self, port: str, on_line: Callable[[str], None] | None = None, maxlen: int = 2000,
                 on_status: Callable[[bool, str], None] | None = None, retry_s: float = 0.2) -> None:
        self.port = port
        self.on_line = on_line
        self.on_status = on_status
        self.retry_s = retry_s
        self.lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.connected = False
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
        if connected != self.connected:
            self.connected = connected
            if self.on_status:
                self.on_status(connected, why)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.lines.append(line)
        if self.on_line:
            self.on_line(line)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = serial.Serial(os.path.realpath(self.port), BAUD, timeout=0.1)
            except (serial.SerialException, OSError) as exc:
                self._status(False, str(exc))
                self._stop.wait(self.retry_s)
                continue
            self.connects += 1
            self._status(True, "connected")
            pending = b""
            try:
                while not self._stop.is_set():
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
                if pending:
                    self._emit(pending)
                self._status(False, f"disconnected: {exc}")
            finally:
                try:
                    conn.close()
                except (serial.SerialException, OSError):
                    pass
            self._stop.wait(self.retry_s)
        self._status(False, "stopped")
