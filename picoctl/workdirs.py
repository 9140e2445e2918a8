"""Private work folders (a release upload on the hub, a release being built), and the removal of
those a killed process left behind.

Each work folder `<parent>/<prefix>XXXX` holds an exclusive lock on its `.lock` while it lives, and
its work happens in its `work/` subfolder. The next run removes every folder of that prefix whose
lock nobody holds: what a SIGKILL or a power cut interrupted, however many processes share the
parent folder. A folder is made, and its lock taken, under a shared lock on the parent folder, and
the removal holds that lock exclusively, so a folder without its lock yet is never one being made:
it is removed too, however young.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

LOCK = ".lock"


@contextlib.contextmanager
def _parent_locked(parent: Path, how: int) -> Iterator[None]:
    """`parent` (a folder) locked with flock `how` (LOCK_SH to make a work folder, LOCK_EX to sweep)."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def work_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new, empty private folder for one piece of work, removed when it ends (OSError when the disk refuses)."""
    holder: Path | None = None
    fd: int | None = None
    try:
        with _parent_locked(parent, fcntl.LOCK_SH):  # no sweep until this folder's lock is held
            holder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            fd = os.open(holder / LOCK, os.O_WRONLY | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
        (holder / "work").mkdir()
        yield holder / "work"
    finally:
        if fd is not None:
            os.close(fd)
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)


def remove_interrupted(parent: Path, prefix: str) -> int:
    """Remove the work folders of `prefix` under `parent` that no live process holds; how many there were."""
    removed = 0
    with _parent_locked(parent, fcntl.LOCK_EX):
        for holder in parent.glob(f"{prefix}*"):
            if not holder.is_dir() or holder.is_symlink():
                continue
            try:
                fd: int | None = os.open(holder / LOCK, os.O_RDONLY)
            except FileNotFoundError:  # killed between making the folder and locking it
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
