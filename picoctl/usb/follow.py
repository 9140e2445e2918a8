"""Follow every MicroPython board on USB and record its heartbeats in the hub (`picoctl usb follow`).

Boards are found as `usb list` finds them (polled every usb.poll_s); each gets a SerialLog that gives
way: a push, flash or log viewer on that port takes it within a few hundredths of a second, and the
follower picks it up again after. So USB Picos stay in the fleet without anyone watching a console.
"""

from __future__ import annotations

import threading
from typing import Callable

from ..config import FleetConfig
from . import detect
from .serial_log import SerialLog
from .telemetry import HeartbeatForwarder


def followed(board: detect.Board) -> bool:
    """A serial port running MicroPython (RP2 boards; ESP32 bridges run anything)."""
    return board.kind == "serial" and board.board_id == "micropython"


class Follower:
    """Follows boards as they come and go until `stop()`; `on_event(port, what)` hears about each."""

    def __init__(self, cfg: FleetConfig, on_event: Callable[[str, str], None] | None = None) -> None:
        self.cfg = cfg
        self.on_event = on_event or (lambda port, what: None)
        self.logs: dict[str, tuple[SerialLog, HeartbeatForwarder]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usb-follow", daemon=True)

    def __enter__(self) -> "Follower":
        detect.scan(self.cfg)  # a bad [usb] section is the caller's error, not a dead thread's
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for port in list(self.logs):
            self._drop(port)

    def heartbeats(self, port: str) -> int:
        """Heartbeats forwarded from `port` since it was found."""
        return self.logs[port][1].sent if port in self.logs else 0

    def _run(self) -> None:
        for change in detect.watch(self.cfg, self._stop):
            for board in filter(followed, change.removed):
                if board.path in self.logs:
                    self._drop(board.path)
                    self.on_event(board.path, "gone")
            for board in filter(followed, change.added):
                if board.path not in self.logs:
                    self.logs[board.path] = self._follow(board.path)
                    self.on_event(board.path, "following")

    def _follow(self, port: str) -> tuple[SerialLog, HeartbeatForwarder]:
        forward = HeartbeatForwarder(self.cfg, on_error=lambda message: self.on_event(port, message))

        def status(up: bool, why: str) -> None:
            self.on_event(port, "connected" if up else why)

        log = SerialLog(port, on_line=forward, on_status=status, maxlen=50, gives_way=True)
        log.start()
        return log, forward

    def _drop(self, port: str) -> None:
        log, forward = self.logs.pop(port)
        log.stop()
        forward.close(0)  # a slow hub does not hold up the other boards or the stop
