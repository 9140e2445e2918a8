"""Private work folders (a release upload on the hub, a release being built), and the removal of
those a killed process left behind.

Each work folder `<parent>/<prefix>XXXX` holds an exclusive lock on its `.lock` while it lives, and
its work happens in its `work/` subfolder. The next run removes every folder of that prefix whose
lock nobody holds: what a SIGKILL or a power cut interrupted, however many processes share the
parent folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

LOCK = ".lock"
UNLOCKED_GRACE_S = 60.0  # a folder without its lock yet is taken for interrupted only this long after


@contextlib.contextmanager
def work_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new, empty private folder for one piece of work, removed when it ends (OSError when the disk refuses)."""
    holder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        fd = os.open(holder / LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            (holder / "work").mkdir()
            yield holder / "work"
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def remove_interrupted(parent: Path, prefix: str) -> int:
    """Remove the work folders of `prefix` under `parent` that no live process holds; how many there were."""
    removed = 0
    for holder in parent.glob(f"{prefix}*"):
        if not holder.is_dir() or holder.is_symlink():
            continue
        try:
            fd: int | None = os.open(holder / LOCK, os.O_RDONLY)
        except FileNotFoundError:  # killed between making the folder and locking it, or just made
            if time.time() - holder.stat().st_mtime < UNLOCKED_GRACE_S:
                continue
            fd = None
        except OSError:
            continue
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # another process's work, going on
        finally:
            if fd is not None:
                os.close(fd)
        shutil.rmtree(holder, ignore_errors=True)
        removed += 1
    return removed
