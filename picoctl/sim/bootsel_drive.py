"""A virtual BOOTSEL drive: a folder holding INFO_UF2.TXT that "reboots" once a whole UF2 lands.

`VirtualDrive` polls the folder like the RP2 boot ROM consumes blocks: when a file on it is a
complete, valid UF2 image for its family, the payload is kept as the board's flash, the folder is
removed (the volume goes away) and `on_flashed` runs (e.g. to plug a VirtualPico back in).
Incomplete or foreign images are left alone, as the boot ROM ignores them.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Callable

from ..errors import BadInput
from . import SimError
from ..usb import uf2
from ..usb.bootsel import INFO_FILE

INFO_TEXT = {
    "rp2040": "UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n",
    "rp2350": "UF2 Bootloader v1.0\nModel: Raspberry Pi RP2350\nBoard-ID: RP2350\n",
}


def make_drive(path: Path, family: str = "rp2040") -> Path:
    """Create the drive folder with its INFO_UF2.TXT and INDEX.HTM."""
    if family not in INFO_TEXT:
        raise BadInput(f"unknown family {family!r} (expected one of {', '.join(INFO_TEXT)})")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / INFO_FILE).write_text(INFO_TEXT[family])
    (path / "INDEX.HTM").write_text('<html><head><meta http-equiv="refresh" content="0;URL=\'https://raspberrypi.com/device/RP2?version=E0C9125B0D9B\'"/></head></html>\n')
    return path


class VirtualDrive:
    """A BOOTSEL drive that takes one image, then disappears. Use as a context manager."""

    def __init__(self, path: Path, family: str = "rp2040", on_flashed: Callable[[bytes], None] | None = None,
                 poll_s: float = 0.02) -> None:
        self.path = Path(path)
        self.family = family
        self.on_flashed = on_flashed
        self.poll_s = poll_s
        self.flashed: dict[int, bytes] | None = None  # the payload by address, once flashed
        self.image: bytes | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"bootsel-{self.path.name}", daemon=True)

    def __enter__(self) -> "VirtualDrive":
        make_drive(self.path, self.family)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                raise SimError(f"BOOTSEL drive {self.path}: its watcher still running 5 s after stop")

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            for f in sorted(self.path.glob("*")):
                if f.name in (INFO_FILE, "INDEX.HTM") or not f.is_file():
                    continue
                try:
                    data = f.read_bytes()
                    uf2.validate(data, self.family)
                except (OSError, BadInput):
                    continue
                self.image = data
                self.flashed = uf2.payload_of(data, self.family)
                shutil.rmtree(self.path, ignore_errors=True)
                if self.on_flashed:
                    self.on_flashed(data)
                return
