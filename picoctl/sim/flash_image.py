"""A Pico W's flash as the rig keeps it: a LittleFS2 image in a host file, read and written from the
host with littlefs-python (the same littlefs the board's MicroPython mounts, see nor_boot.py).

Geometry as on the rp2 port: 4096-byte erase blocks, 256-byte programs, and the 848 KiB that the
Pico W's firmware leaves to the filesystem. Reading while the board runs sees what a power cut at
that instant would leave (a commit in progress is not there yet), which is what tests poll for.
"""

from __future__ import annotations

import os
from pathlib import Path

from littlefs import LittleFS, LittleFSError, UserContext

BLOCK_SIZE = 4096
BLOCK_COUNT = 212  # 848 KiB: MICROPY_HW_FLASH_STORAGE_BYTES of the rp2 port's RPI_PICO_W
PROG_SIZE = 256
READ_SIZE = 32  # MicroPython's VfsLfs2 default, as rp2 mounts it
CACHE_SIZE = 1024  # what VfsLfs2 derives (4 x progsize): smaller, and inline files it wrote read as corrupt
LOOKAHEAD = 32


class FlashImage:
    """The board's filesystem: paths are relative to its root, as the board's own code sees them."""

    def __init__(self, path: Path, blocks: int = BLOCK_COUNT) -> None:
        self.path = Path(path)
        self.blocks = blocks

    def _fs(self, image: bytes | None = None) -> LittleFS:
        """The filesystem in memory (to change it, then _save), mounted from `image` if given."""
        fs = LittleFS(block_size=BLOCK_SIZE, block_count=self.blocks, prog_size=PROG_SIZE, read_size=READ_SIZE,
                      cache_size=CACHE_SIZE, lookahead_size=LOOKAHEAD, mount=False)
        if image is not None:
            fs.context.buffer[:] = image
            fs.mount()
        return fs

    def _reader(self) -> tuple[LittleFS, int]:
        """The filesystem mounted read-only from the file itself: only the blocks it reads are read
        (fast on a large flash while the board runs). Close the second item, a descriptor, after."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fs = LittleFS(_FileBlocks(fd), block_size=BLOCK_SIZE, block_count=self.blocks, prog_size=PROG_SIZE,
                          read_size=READ_SIZE, cache_size=CACHE_SIZE, lookahead_size=LOOKAHEAD, mount=True)
        except BaseException:
            os.close(fd)
            raise
        return fs, fd

    def format(self, files: dict[str, bytes]) -> None:
        """A fresh filesystem holding `files` (erased flash elsewhere)."""
        fs = self._fs()
        fs.context.buffer[:] = b"\xff" * (BLOCK_SIZE * self.blocks)
        fs.format()
        fs.mount()
        _write(fs, files)
        self._save(fs)

    def write(self, files: dict[str, bytes]) -> None:
        """Add or replace files (while the board is off)."""
        fs = self._fs(self.path.read_bytes())
        _write(fs, files)
        self._save(fs)

    def fill(self, leave: int) -> None:
        """Take the flash's free room but about `leave` bytes with a file (while the board is off)."""
        fs = self._fs(self.path.read_bytes())
        free = (self.blocks - fs.used_block_count) * BLOCK_SIZE
        with fs.open("filler.bin", "wb") as f:
            f.write(bytes(max(free - leave - BLOCK_SIZE, 0)))
        self._save(fs)

    def mkdir(self, path: str) -> None:
        fs = self._fs(self.path.read_bytes())
        fs.makedirs(path, exist_ok=True)
        self._save(fs)

    def remove(self, path: str) -> None:
        fs = self._fs(self.path.read_bytes())
        fs.remove(path)
        self._save(fs)

    def read(self, path: str) -> bytes | None:
        """A file's content; None when it is not there or the filesystem cannot be read just now."""
        try:
            fs, fd = self._reader()
        except (LittleFSError, OSError):
            return None
        try:
            with fs.open(path, "rb") as f:  # `fs` is held meanwhile: the file does not hold it
                return f.read()
        except (LittleFSError, OSError):
            return None
        finally:
            os.close(fd)

    def files(self) -> dict[str, bytes]:
        """Every file on the flash, by path."""
        fs, fd = self._reader()
        try:
            out: dict[str, bytes] = {}
            for root, _dirs, names in fs.walk("/"):
                for name in names:
                    path = f"{root.rstrip('/')}/{name}".lstrip("/")
                    with fs.open(path, "rb") as f:
                        out[path] = f.read()
            return dict(sorted(out.items()))
        finally:
            os.close(fd)

    def dirs(self) -> list[str]:
        """Every folder on the flash."""
        fs, fd = self._reader()
        try:
            return sorted(f"{root.rstrip('/')}/{d}".lstrip("/") for root, dirs, _ in fs.walk("/") for d in dirs)
        finally:
            os.close(fd)

    def free_bytes(self) -> int:
        fs, fd = self._reader()
        try:
            return (self.blocks - fs.used_block_count) * BLOCK_SIZE
        finally:
            os.close(fd)

    def _save(self, fs: LittleFS) -> None:
        fs.unmount()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(bytes(fs.context.buffer))
        os.replace(tmp, self.path)


def _write(fs: LittleFS, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        parent = name.rpartition("/")[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        with fs.open(name, "wb") as f:
            f.write(data)


class _FileBlocks(UserContext):
    """littlefs-python's block device on the image file, for reading only."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def read(self, cfg: object, block: int, off: int, size: int) -> bytearray:
        return bytearray(os.pread(self.fd, size, block * BLOCK_SIZE + off))

    def prog(self, cfg: object, block: int, off: int, data: bytes) -> int:
        raise OSError("the flash image is open for reading")

    def erase(self, cfg: object, block: int) -> int:
        raise OSError("the flash image is open for reading")

    def sync(self, cfg: object) -> int:
        return 0
