"""Who has a board's serial port: one picoctl operation at a time; the background follower gives way.

Two lock files per port in `lock_dir()` (the port's real device path flattened into the name), each
held by flock, so a killed process holds nothing; the last to let go removes the file, so none stay
behind (a lock taken on a file removed meanwhile is retried on the file there now):
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


def _lock_path(port: str, kind: str) -> Path:
    name = os.path.realpath(port).removeprefix("/dev/").strip("/").replace("/", "_")
    return lock_dir() / f"picoctl-port-{name}.{kind}"


def _open(port: str, path: Path) -> int:
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


def _is_current(fd: int, path: Path) -> bool:
    """`fd` is still the file at `path` (the last user removes a lock file; a lock on a removed one is no lock)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _try(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _locked(port: str, kind: str, how: int, deadline: float | None = None) -> int | None:
    """The lock file `kind` of `port` locked `how` (LOCK_SH, LOCK_EX), waiting until `deadline`
    (None: blocking); None when the deadline passed."""
    path = _lock_path(port, kind)
    while True:
        fd = _open(port, path)
        if deadline is None:
            fcntl.flock(fd, how)
        elif not _try(fd, how):
            os.close(fd)
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)
            continue
        if _is_current(fd, path):
            return fd
        os.close(fd)  # removed by its last user while we waited: lock the one there now


def _unlock(fd: int, port: str, kind: str) -> None:
    """Let go of a lock file, removing it when no one else has it (so none stay behind in the lock folder)."""
    path = _lock_path(port, kind)
    try:
        if _try(fd, fcntl.LOCK_EX) and _is_current(fd, path):
            path.unlink(missing_ok=True)  # whoever opened it meanwhile sees it gone once locked, and retries
    except OSError:
        pass  # a lock folder we may not write in: the file stays, harmlessly
    finally:
        os.close(fd)


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
    want = _locked(port, "want", fcntl.LOCK_SH)
    assert want is not None
    hold: int | None = None
    try:
        hold = _locked(port, "hold", fcntl.LOCK_EX, time.monotonic() + (CLAIM_S if timeout is None else timeout))
        if hold is None:
            raise PicoctlError(f"{port}: in use by {_holder_of(port)}; try again when it is done")
        _mark(hold, who)
        yield
    finally:
        if hold is not None:
            _unlock(hold, port, "hold")
        _unlock(want, port, "want")


def _holder_of(port: str) -> str:
    try:
        fd = os.open(_lock_path(port, "hold"), os.O_RDONLY)
    except OSError:
        return "another program"
    try:
        return _holder(fd)
    finally:
        os.close(fd)


class FollowerHold:
    """The follower's side of one port: `take()` when no operation wants it, `wanted()` while open."""

    def __init__(self, port: str) -> None:
        self.port = port
        self._hold: int | None = None

    def wanted(self) -> bool:
        """An operation is waiting for the port, or has it (its `.want` file exists and is locked)."""
        path = _lock_path(self.port, "want")
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False  # an operation makes it before it waits
        except OSError as exc:
            raise PicoctlError(f"{self.port}: cannot take its lock file {path}: {exc.strerror}") from None
        try:
            return not _try(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)

    def take(self) -> bool:
        """Hold the port if no operation wants or has it."""
        if self._hold is not None:
            return True
        if self.wanted():
            return False
        fd = _locked(self.port, "hold", fcntl.LOCK_EX, deadline=0)
        if fd is None:
            return False
        _mark(fd, "picoctl usb follow")
        self._hold = fd
        return True

    def release(self) -> None:
        if self._hold is not None:
            _unlock(self._hold, self.port, "hold")
            self._hold = None

    def close(self) -> None:
        self.release()
