"""BOOTSEL drives: the mass-storage volume an RP2 board shows in its bootloader.

The volume holds INFO_UF2.TXT, e.g. for an RP2040:

    UF2 Bootloader v3.0
    Model: Raspberry Pi RP2
    Board-ID: RPI-RP2
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, PicoctlError
from . import SERIAL_BAUD, port_claim

INFO_FILE = "INFO_UF2.TXT"


@dataclass(frozen=True)
class DriveInfo:
    path: Path
    board_id: str
    model: str
    family: str | None  # "rp2040" | "rp2350", None when the model is not an RP2


def family_of(board_id: str, model: str) -> str | None:
    text = f"{board_id} {model}".upper()
    if "RP2350" in text:
        return "rp2350"
    if "RP2" in text:
        return "rp2040"
    return None


def read_info(drive: Path) -> DriveInfo:
    """Parse a drive's INFO_UF2.TXT; BadInput if `drive` is not a BOOTSEL drive."""
    try:
        text = (drive / INFO_FILE).read_text(errors="replace")
    except OSError:
        raise BadInput(f"{drive}: not a BOOTSEL drive (no readable {INFO_FILE})") from None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    board_id, model = fields.get("board-id", ""), fields.get("model", "")
    return DriveInfo(drive, board_id, model, family_of(board_id, model))


def is_drive(path: Path) -> bool:
    return (path / INFO_FILE).is_file()


def find_drives(roots: list[Path]) -> list[DriveInfo]:
    """BOOTSEL drives mounted directly under each root or one level deeper
    (/media/<user>/RPI-RP2), or a root that is itself one."""
    found: dict[Path, DriveInfo] = {}
    for root in roots:
        try:
            candidates = [root, *sorted(root.glob("*")), *sorted(root.glob("*/*"))]
        except OSError:
            continue
        for p in candidates:
            try:
                if p not in found and is_drive(p):
                    found[p] = read_info(p)
            except (OSError, BadInput):
                continue  # unmounted between listing and reading
    return list(found.values())


def enter_bootsel(port: str) -> None:
    """Send a running MicroPython board to BOOTSEL with `machine.bootloader()` over the raw REPL.

    The board resets at once, so the port going silent or away is success; a traceback is not.
    """
    with port_claim.claim(port, "picoctl usb flash"):
        err = _reboot_to_bootsel(port)
    if err.strip():
        raise PicoctlError(f"{port}: the board did not reboot into BOOTSEL: "
                           f"{err.decode(errors='replace').strip().splitlines()[-1]}")


def _reboot_to_bootsel(port: str) -> bytes:
    """machine.bootloader() over the raw REPL; what the board printed on stderr (nothing: it went)."""
    import serial
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    from .push import interrupt

    try:
        t = SerialTransport(os.path.realpath(port), baudrate=SERIAL_BAUD, timeout=2)
    except (TransportError, serial.SerialException, OSError) as exc:
        raise PicoctlError(f"{port}: cannot open the serial port: {exc}") from None
    try:
        interrupt(t)
        t.enter_raw_repl(soft_reset=False)
        t.exec_raw_no_follow("import machine\nmachine.bootloader()")
        _, err = t.follow(timeout=2)
    except (TransportError, serial.SerialException, OSError):
        return b""  # the board dropped off USB on its way to BOOTSEL
    finally:
        try:
            t.close()
        except (serial.SerialException, OSError):
            pass
    return err
