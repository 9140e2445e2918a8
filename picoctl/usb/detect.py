"""Find boards on USB: serial ports (pyserial's list) and mounted BOOTSEL drives, and poll for changes."""

from __future__ import annotations

import glob
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from ..config import FleetConfig, UsbConfig
from ..errors import BadInput
from . import RP2_VID, bootsel

PID_MICROPYTHON = 0x0005
PID_BOOTSEL = {0x0003: "rp2040", 0x000F: "rp2350"}
# USB-serial bridges and native USB found on ESP32 boards: (vid, pid or None for any).
ESP_IDS = {
    (0x10C4, 0xEA60): "CP210x", (0x1A86, 0x7523): "CH340", (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FT232R", (0x0403, 0x6010): "FT2232", (0x0403, 0x6015): "FT231X",
    (0x303A, None): "Espressif native USB",
}
# Boards running MicroPython under another vendor's ids say so in their description.
RP2_TEXT = re.compile(r"micropython|board in fs mode|\bpico\b|rp2040|rp2350", re.IGNORECASE)


@dataclass(frozen=True)
class Board:
    kind: Literal["serial", "bootsel"]
    path: str
    description: str
    serial_number: str | None = None
    board_id: str | None = None
    family: str | None = None  # rp2040 | rp2350 | rp2 (either) | esp32
    vid: int | None = None
    pid: int | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (self.kind, self.path, self.serial_number)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def classify(port: ListPortInfo) -> Board | None:
    """A Board for a serial port that is an RP2 running MicroPython or an ESP32; None otherwise."""
    text = " ".join(filter(None, (port.description, port.product, port.manufacturer, port.interface)))
    vid, pid = port.vid, port.pid

    def board(family: str | None, description: str, board_id: str | None = None) -> Board:
        return Board("serial", port.device, description, port.serial_number, board_id, family, vid, pid)

    if vid == RP2_VID:
        if pid in PID_BOOTSEL:
            return board(PID_BOOTSEL[pid], f"{PID_BOOTSEL[pid].upper()} in BOOTSEL mode", "bootsel")
        if pid == PID_MICROPYTHON:
            return board("rp2", port.product or "MicroPython board", "micropython")
        return board("rp2", port.product or f"Raspberry Pi device 0x{pid or 0:04x}")
    for (v, p), name in ESP_IDS.items():
        if vid == v and (p is None or pid == p):
            return board("esp32", f"{port.product or 'ESP32 board'} ({name})")
    if vid is not None and RP2_TEXT.search(text):
        return board("rp2", port.product or port.description or "MicroPython board", "micropython")
    return None


def _split(value: str) -> list[str]:
    return [v for v in value.split(":") if v.strip()]


def _usb(cfg: FleetConfig | None) -> UsbConfig:
    usb = cfg.usb if cfg else UsbConfig()
    if usb.poll_s <= 0:
        raise BadInput(f"usb.poll_s: expected a positive number of seconds, got {usb.poll_s}")
    return usb


def _resolve(cfg: FleetConfig | None, value: str) -> str:
    return str(cfg.resolve(value)) if cfg else str(Path(value).expanduser())


def _extra_ports(cfg: FleetConfig | None) -> list[Board]:
    out = []
    for pattern in _split(_usb(cfg).extra_ports):
        for path in sorted(glob.glob(_resolve(cfg, pattern))):
            if Path(path).exists():  # a dangling link is an unplugged board
                name = Path(path).name
                serial = name.split("-", 1)[1] if name.startswith("pico-") else None
                out.append(Board("serial", path, "configured port (usb.extra_ports)", serial, "micropython", "rp2"))
    return out


def scan(cfg: FleetConfig | None = None) -> list[Board]:
    """Every board attached now: MicroPython/ESP32 serial ports, extra ports, BOOTSEL drives."""
    boards = [b for b in map(classify, list_ports.comports()) if b]
    boards += _extra_ports(cfg)
    roots = [Path(_resolve(cfg, r)) for r in _split(_usb(cfg).drive_roots)]
    for d in bootsel.find_drives(roots):
        boards.append(Board("bootsel", str(d.path), f"{d.model or 'RP2'} BOOTSEL drive", None, d.board_id,
                            d.family, RP2_VID, None))
    return sorted(boards, key=lambda b: (b.kind, b.path))


@dataclass(frozen=True)
class Change:
    added: list[Board]
    removed: list[Board]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class Poller:
    """Diffs successive scans; the first poll reports every attached board as added."""

    def __init__(self, cfg: FleetConfig | None = None, scanner: Callable[[FleetConfig | None], list[Board]] = scan) -> None:
        self.cfg = cfg
        self.scanner = scanner
        self.boards: dict[tuple[str, str, str | None], Board] = {}

    def poll(self) -> Change:
        now = {b.key: b for b in self.scanner(self.cfg)}
        change = Change([b for k, b in now.items() if k not in self.boards],
                        [b for k, b in self.boards.items() if k not in now])
        self.boards = now
        return change


def watch(cfg: FleetConfig | None = None, stop: threading.Event | None = None,
          interval: float | None = None) -> Iterator[Change]:
    """Yield each non-empty change until `stop` is set; polls every usb.poll_s (0.5 s by default)."""
    poller = Poller(cfg)
    stop = stop or threading.Event()
    every = interval or _usb(cfg).poll_s
    while not stop.is_set():
        change = poller.poll()
        if change:
            yield change
        stop.wait(every)


def wait_for(cfg: FleetConfig | None, match: Callable[[Board], bool], timeout: float) -> Board | None:
    """The first board matching `match` that is attached within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    every = min(_usb(cfg).poll_s, 0.2)
    while True:
        for b in scan(cfg):
            if match(b):
                return b
        if time.monotonic() >= deadline:
            return None
        time.sleep(every)
