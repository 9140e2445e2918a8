"""The deploy journal: what a deploy or rollback in flight intends and how far it got.

Written to a temp file, fsynced and renamed, so a reader sees the old step or the new one, never a
torn file. The next `picoctl pi …` call reads it to finish or undo an interrupted operation.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import PicoctlError
from ..release import SEMVER
from .layout import disk_error, fsync_dir

# Steps, in order. Before the `current` link moves: started (the version of a deploy is not known yet),
# fetched, unpacked.
# After it: switched, restarted. `reverting`: going back to `from_version` after a failure.
STEPS = ("started", "fetched", "unpacked", "switched", "restarted", "reverting")
CRASH_ENV = "PICOCTL_PI_CRASH_AFTER"  # fault injection: SIGKILL ourselves right after this step (or point)


@dataclass
class Entry:
    op: str  # "deploy" or "rollback"
    to_version: str | None  # None until a deploy has read the release's meta.json
    from_version: str | None
    previous_before: str | None  # where the `previous` link pointed before we touched it
    actor: str
    step: str = "started"
    reason: str = ""
    started_at: float = field(default_factory=time.time)
    source: str = ""  # what a deploy was given: folder, meta.json or URL


def write(path: Path, entry: Entry) -> None:
    """Record `entry` durably, then honour the fault-injection point for its step.

    A write the disk refuses leaves the journal as it was (no temp file) and raises PicoctlError.
    """
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(asdict(entry), f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, f"{path}: cannot write the deploy journal") from None
    crash_point(entry.step)


def crash_point(name: str) -> None:
    """Fault injection for the tests: SIGKILL ourselves here when CRASH_ENV names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def advance(path: Path, entry: Entry, step: str, reason: str = "") -> None:
    entry.step = step
    if reason:
        entry.reason = reason
    write(path, entry)


def read(path: Path) -> Entry | None:
    try:
        data = json.loads(path.read_text())
        entry = Entry(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise PicoctlError(f"{path}: unreadable deploy journal ({exc}); inspect it, then remove it") from None
    if entry.step not in STEPS:
        raise PicoctlError(f"{path}: unknown step {entry.step!r} in the deploy journal")
    wrong = _wrong_field(entry)
    if wrong:
        raise PicoctlError(f"{path}: the deploy journal's {wrong}; inspect it, then remove it")
    return entry


def _wrong_field(entry: Entry) -> str:
    """What of a journal read back is not as `write` makes it ("" when nothing): the links are
    pointed at its versions, so each must be one."""
    for name in ("to_version", "from_version", "previous_before"):
        value = getattr(entry, name)
        if value is not None and not (isinstance(value, str) and SEMVER.match(value)):
            return f"{name} {value!r:.40} is not a version"
    for name in ("op", "actor", "reason", "source"):
        if not isinstance(getattr(entry, name), str):
            return f"{name} is not text"
    if isinstance(entry.started_at, bool) or not isinstance(entry.started_at, (int, float)):
        return "started_at is not a time"
    return ""


def clear(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)
