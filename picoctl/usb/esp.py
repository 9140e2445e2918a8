"""Flash an ESP32 board's firmware through esptool used as a library (esptool 5).

The image is checked before the port is touched: an ESP image (magic 0xE9) whose header parses,
for the chip asked for (or, with `--chip auto`, for the chip esptool detects). A MicroPython
`firmware.bin` starts with the bootloader, so it goes at the chip's bootloader offset.
esptool's progress reaches the shared Progress interface through a logger installed for the call.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial
from esp_pylib.logger import EspLog
from esptool.bin_image import LoadFirmwareImage
from esptool.cmds import attach_flash, connect_esp, detect_chip, reset_chip, run_stub, write_flash
from esptool.logger import TemplateLogger, log
from esptool.targets import CHIP_DEFS
from esptool.util import FatalError

from ..errors import BadInput, PicoctlError
from ..progress import Progress
from . import ESP_BAUD, port_claim

ESP_IMAGE_MAGIC = 0xE9
CHIPS = tuple(name for name in CHIP_DEFS if name != "esp8266")
CHIP_OF_ID = {c.IMAGE_CHIP_ID: name for name, c in CHIP_DEFS.items() if c.IMAGE_CHIP_ID is not None}


@dataclass(frozen=True)
class EspFlashResult:
    port: str
    chip: str
    address: int
    bytes: int
    seconds: float


def image_chip(data: bytes, chip: str = "auto") -> str:
    """The chip an ESP32-family firmware image is built for; BadInput when it is not one or mismatches."""
    if chip != "auto" and chip not in CHIPS:
        raise BadInput(f"unknown chip {chip!r} (expected auto or one of {', '.join(CHIPS)})")
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise BadInput("not an ESP firmware image (expected magic byte 0xE9 at offset 0)")
    try:
        image = LoadFirmwareImage("esp32", data)
    except (FatalError, ValueError, IndexError) as exc:
        raise BadInput(f"damaged ESP firmware image: {exc}") from None
    built_for = CHIP_OF_ID.get(image.chip_id)
    if built_for is None:
        raise BadInput(f"ESP firmware image names an unknown chip id {image.chip_id}")
    if chip != "auto" and built_for != chip:
        raise BadInput(f"firmware is built for {built_for}, not {chip}: refusing to flash it")
    return built_for


class _ProgressLogger(TemplateLogger):
    """esptool's log output into a Progress: bars become byte counts, messages are kept."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.messages: list[str] = []

    def print(self, *args: Any, **kwargs: Any) -> None:
        self.messages.append(" ".join(str(a) for a in args))

    def note(self, message: str) -> None:
        self.messages.append(f"Note: {message}")

    def warning(self, message: str) -> None:
        self.messages.append(f"Warning: {message}")

    def error(self, message: str) -> None:
        self.messages.append(f"Error: {message}")

    def stage(self, finish: bool = False) -> None:
        pass

    def progress_bar(self, cur_iter: int, total_iters: int, prefix: str = "", suffix: str = "",
                     bar_length: int = 30) -> None:
        self.progress.update(cur_iter, total_iters)

    def set_verbosity(self, verbosity: str) -> None:
        pass


def flash_esp(firmware: Path, port: str, progress: Progress, chip: str = "auto", address: int | None = None,
              baud: int = ESP_BAUD, connect_attempts: int = 7) -> EspFlashResult:
    """Write `firmware` to the board on `port`, then hard-reset it."""
    t0 = time.monotonic()
    try:
        data = Path(firmware).read_bytes()
    except OSError as exc:
        raise BadInput(f"{firmware}: cannot read firmware: {exc.strerror}") from None
    built_for = image_chip(data, chip)
    if address is not None and (address < 0 or address % 0x1000):
        raise BadInput(f"flash address 0x{address:x} must be a non-negative multiple of 0x1000")
    if not os.path.exists(port):
        raise PicoctlError(f"{port}: no such serial port; is the board plugged in? (`picoctl usb list`)")
    progress.start(total=len(data), phase="connect")
    previous = EspLog.instance
    log.set_logger(_ProgressLogger(progress))
    try:
        with port_claim.claim(port, "picoctl usb flash-esp"), \
                (detect_chip(port, connect_attempts=connect_attempts) if chip == "auto"
                 else connect_esp(port, chip, connect_attempts=connect_attempts)) as esp:
            found = esp.CHIP_NAME.lower().replace("-", "")
            if found != built_for:
                raise BadInput(f"{port}: the board is an {esp.CHIP_NAME}, the firmware is for {built_for}")
            esp = run_stub(esp)
            if baud != esp.ESP_ROM_BAUD:
                esp.change_baud(baud)
            attach_flash(esp)
            where = address if address is not None else CHIP_DEFS[found].BOOTLOADER_FLASH_OFFSET
            progress.phase("write", total=len(data))
            write_flash(esp, [(where, data)])
            reset_chip(esp, "hard-reset")
    except PicoctlError as exc:
        progress.fail(str(exc))
        raise
    except (FatalError, serial.SerialException, OSError) as exc:
        reason = f"{port}: esptool failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        progress.fail(reason)
        raise PicoctlError(reason) from None
    finally:
        EspLog.instance = previous
    progress.finish()
    return EspFlashResult(port, found, where, len(data), time.monotonic() - t0)
