"""Flash a UF2 image by copying it onto a BOOTSEL drive, then wait for the board to reboot."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, PicoctlError
from ..progress import Progress
from . import bootsel, uf2

CHUNK = 64 * 1024
TARGET_NAME = "FIRMWARE.UF2"


@dataclass(frozen=True)
class FlashResult:
    drive: Path
    info: uf2.UF2Info
    bytes_written: int
    seconds: float


def _gone(drive: Path) -> bool:
    return not bootsel.is_drive(drive)


def flash_uf2(source: bytes | Path, drive: Path, progress: Progress, gone_timeout_s: float = 20.0) -> FlashResult:
    """Validate `source` for the drive's family, copy the blocks that family writes (FlashResult.info
    says what was skipped) in fsynced chunks, await the drive's going.

    A board reboots as soon as the last block lands, so an I/O error after every byte was written
    (the volume vanished under the final flush) counts as success once the drive is gone.
    """
    t0 = time.monotonic()
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    drive = Path(drive)
    board = bootsel.read_info(drive)
    if board.family is None:
        raise BadInput(f"{drive}: board {board.board_id or board.model or '?'} is not an RP2040 or RP2350")
    data, info = uf2.select(data, board.family)  # only what this board writes: its family's blocks, once each
    progress.start(total=len(data), phase="copy")
    written = 0
    try:
        fd = os.open(drive / TARGET_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        progress.fail(f"cannot write to {drive}: {exc.strerror}")
        raise PicoctlError(f"{drive}: cannot write the image: {exc.strerror}") from None
    try:
        view = memoryview(data)
        while written < len(data):
            n = os.write(fd, view[written: written + CHUNK])
            os.fsync(fd)
            written += n
            progress.advance(n)
        os.close(fd)
    except OSError as exc:
        try:
            os.close(fd)
        except OSError:
            pass
        if written < len(data) or not _gone(drive):
            reason = f"copy to {drive} failed after {written} of {len(data)} bytes: {exc.strerror}"
            progress.fail(reason)
            raise PicoctlError(reason) from None
    progress.phase("reboot")
    deadline = time.monotonic() + gone_timeout_s
    while not _gone(drive):
        if time.monotonic() > deadline:
            reason = f"{drive}: image copied but the board did not reboot within {gone_timeout_s:g}s"
            progress.fail(reason)
            raise PicoctlError(reason)
        time.sleep(0.05)
    progress.finish()
    return FlashResult(drive, info, written, time.monotonic() - t0)
