"""One deploy at a time: an flock on `<root>/.deploy.lock`, released by the kernel if we die."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import PicoctlError

POLL_S = 0.1


class LockBusy(PicoctlError):
    """Another deploy, rollback or update holds the lock."""


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(path: Path) -> str:
    """What the lock file says about whoever holds it."""
    try:
        return path.read_text().strip() or "unknown process"
    except OSError:
        return "unknown process"


@contextmanager
def deploy_lock(path: Path, what: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lock for the block; wait up to `wait_s` for it, then refuse naming the holder."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    except OSError as exc:
        raise PicoctlError(f"{path}: cannot open the deploy lock: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + wait_s
        while not _try(fd):
            if time.monotonic() >= deadline:
                raise LockBusy(f"another deploy is running ({holder(path)}); try again when it ends or pass --wait")
            time.sleep(POLL_S)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {what}, since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, a waiting deploy just cannot name us
        yield
    finally:
        os.close(fd)  # closing drops the flock

