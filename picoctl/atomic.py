"""Whole-or-nothing file writes: a temp file beside the target, fsynced, renamed over it, the folder fsynced.

A reader (or the next boot after a power cut) sees the old content or the new, never a part; a
write that fails removes its temp file and leaves the old content as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes(path: Path, data: bytes, prefix: str = ".tmp-") -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text(path: Path, text: str, prefix: str = ".tmp-") -> None:
    write_bytes(path, text.encode(), prefix)


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
