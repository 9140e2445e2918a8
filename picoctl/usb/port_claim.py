"""Who has a board's serial port: one picoctl operation at a time; the background follower gives way.

Two lock files per port in `lock_dir()` (the port's real device path flattened into the name), each
held by flock, so a killed process holds nothing:
- `.hold`, taken exclusively by whoever has the port open: an operation (push, flash, provision,
  a log viewer) or `usb follow`;
- `.want`, taken shared by every operation waiting for or holding the port.

An operation (`claim`) takes `.want`, then waits for `.hold`. The follower (`FollowerHold`) takes
`.hold` only while no one wants the port, and checks `.want` every 0.02 s while reading, closing the
port when someone does. So a push never fights the follower for the board's bytes and gets the port
within a few hundredths of a second; two operations on one port wait for each other, then fail
naming the holder.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import PicoctlError

CLAIM_S = 10.0  # an operation waits this long for a port held by another operation
POLL_S = 0.01  # how often a waiting operation tries the port's hold lock


def lock_dir() -> Path:
    """The system's lock folder (world-writable, sticky) when there is one, else the temp folder."""
    run = Path("/run/lock")
    return run if os.access(run, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())


def _lock_file(port: str, kind: str) -> int:
    name = os.path.realpath(port).removeprefix("/dev/").strip("/").replace("/", "_")
    path = lock_dir() / f"picoctl-port-{name}.{kind}"
    # Opened without O_CREAT when it exists: a sticky folder refuses O_CREAT on another account's
    # file (fs.protected_regular), and the follower's service runs as its own user.
    try:
        while True:
            try:
                return os.open(path, os.O_RDWR)
            except FileNotFoundError:
                pass
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue  # made by someone else just now
            os.fchmod(fd, 0o666)  # not the umask's: every account's picoctl locks it
            return fd
    except OSError as exc:
        raise PicoctlError(f"{port}: cannot take its lock file {path}: {exc.strerror}") from None


def _try(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 200).decode(errors="replace").strip() or "another program"


def _mark(fd: int, who: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{who} (pid {os.getpid()})".encode(), 0)


@contextmanager
def claim(port: str, who: str, timeout: float | None = None) -> Iterator[None]:
    """Hold `port` for one operation named `who`; PicoctlError naming the holder after `timeout`
    (CLAIM_S by default)."""
    want = _lock_file(port, "want")
    hold = -1
    try:
        fcntl.flock(want, fcntl.LOCK_SH)
        hold = _lock_file(port, "hold")
        deadline = time.monotonic() + (CLAIM_S if timeout is None else timeout)
        while not _try(hold, fcntl.LOCK_EX):
            if time.monotonic() >= deadline:
                raise PicoctlError(f"{port}: in use by {_holder(hold)}; try again when it is done")
            time.sleep(POLL_S)
        _mark(hold, who)
        yield
    finally:
        if hold >= 0:
            os.close(hold)
        os.close(want)


class FollowerHold:
    """The follower's side of one port: `take()` when no operation wants it, `wanted()` while open."""

    def __init__(self, port: str) -> None:
        self.port = port
        self._want = _lock_file(port, "want")
        self._hold = -1

    def wanted(self) -> bool:
        """An operation is waiting for the port, or has it."""
        if _try(self._want, fcntl.LOCK_EX):
            fcntl.flock(self._want, fcntl.LOCK_UN)
            return False
        return True

    def take(self) -> bool:
        """Hold the port if no operation wants or has it."""
        if self._hold >= 0:
            return True
        if self.wanted():
            return False
        fd = _lock_file(self.port, "hold")
        if not _try(fd, fcntl.LOCK_EX):
            os.close(fd)
            return False
        _mark(fd, "picoctl usb follow")
        self._hold = fd
        return True

    def release(self) -> None:
        if self._hold >= 0:
            os.close(self._hold)
            self._hold = -1

    def close(self) -> None:
        self.release()
        os.close(self._want)
