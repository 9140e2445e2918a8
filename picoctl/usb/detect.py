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
ESPRESSIF_VID = 0x303A  # Espressif's own ids: an ESP32-S2/S3/C3/C6 on its native USB
# USB-serial bridge chips. They prove only that a bridge is there: ESP32 boards use them, and so do
# Arduino clones, Zigbee sticks and GPS receivers, so a port behind one is listed as what it is.
BRIDGE_IDS = {
    (0x10C4, 0xEA60): "CP210x", (0x10C4, 0xEA70): "CP2105", (0x10C4, 0xEA71): "CP2108",
    (0x1A86, 0x7523): "CH340", (0x1A86, 0x7522): "CH340", (0x1A86, 0x5523): "CH341",
    (0x1A86, 0x55D3): "CH343", (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FT232R", (0x0403, 0x6010): "FT2232", (0x0403, 0x6011): "FT4232",
    (0x0403, 0x6014): "FT232H", (0x0403, 0x6015): "FT231X",
}
# Firmware that names itself in the USB strings under a maker's own ids (Adafruit, Pimoroni…).
# MicroPython's rp2 port says "MicroPython" or "Board in FS mode"; CircuitPython says so too.
MICROPYTHON_TEXT = re.compile(r"micropython|board in fs mode", re.IGNORECASE)
CIRCUITPYTHON_TEXT = re.compile(r"circuitpython", re.IGNORECASE)
RP2_TEXT = re.compile(r"\bpico\b|rp2040|rp2350", re.IGNORECASE)


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
    """A Board for a USB serial port, said to be only what its ids (and the firmware's own USB
    strings) prove: `board_id` "micropython" only for MicroPython, which alone is followed and pushed
    to; "circuitpython" for CircuitPython; None for an RP2 of unknown firmware or a bridge chip's port.
    None for ports without USB ids and USB devices of no kind known here."""
    text = " ".join(filter(None, (port.description, port.product, port.manufacturer, port.interface)))
    vid, pid = port.vid, port.pid

    def board(family: str | None, description: str, board_id: str | None = None) -> Board:
        return Board("serial", port.device, description, port.serial_number, board_id, family, vid, pid)

    if vid is None:
        return None
    rp2 = vid == RP2_VID or bool(RP2_TEXT.search(text))
    name = port.product or port.description
    if CIRCUITPYTHON_TEXT.search(text):
        return board("rp2" if rp2 else None, f"{name or 'CircuitPython board'} (CircuitPython)", "circuitpython")
    if vid == RP2_VID:
        if pid in PID_BOOTSEL:
            return board(PID_BOOTSEL[pid], f"{PID_BOOTSEL[pid].upper()} in BOOTSEL mode", "bootsel")
        if pid == PID_MICROPYTHON:
            return board("rp2", port.product or "MicroPython board", "micropython")
    if MICROPYTHON_TEXT.search(text):
        return board("esp32" if vid == ESPRESSIF_VID else "rp2" if rp2 else None, name or "MicroPython board",
                     "micropython")
    if vid == RP2_VID:
        return board("rp2", port.product or f"Raspberry Pi device 0x{pid or 0:04x}")
    if vid == ESPRESSIF_VID:
        return board("esp32", f"{name or 'ESP32 board'} (Espressif native USB)")
    chip = BRIDGE_IDS.get((vid, pid or 0))
    if chip:
        return board(None, f"{chip} USB-serial bridge: an ESP32 or another board")
    if rp2:
        return board("rp2", name or "RP2 board")
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
