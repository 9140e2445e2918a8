"""Unpack a pi release archive safely into a private folder, then move it into `releases/<version>/`.

Every entry must sit under the archive's signed `root` prefix, have a safe name (no absolute path, no
`..`), and be a regular file or a folder: links, devices and FIFOs are refused, as are duplicate
entries and archives whose unpacked size passes `pi.max_archive_bytes`. Nothing reaches `releases/`
until the whole archive has unpacked cleanly and every file and folder of it is on disk (fsynced), so
a power cut after the switch cannot leave `current` naming truncated files.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Any

from ..errors import BadInput
from ..progress import Progress
from ..release import check_case_clash, safe_member_name
from .journal import crash_point
from .layout import RELEASE_META, Layout, disk_error, fsync_dir

MAX_ENTRIES = 100_000
CHUNK = 1 << 16


def _target(member: tarfile.TarInfo, prefix: str) -> str | None:
    """The path below the archive root for a member, or None for the root folder itself (or `./`)."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    while name.startswith("./"):  # `tar czf x.tar.gz ./folder` names every entry so
        name = name[2:]
    if name in (prefix, ".") and member.isdir():
        return None
    safe_member_name(name)
    if not name.startswith(prefix + "/"):
        raise BadInput(f"archive entry {member.name!r} is outside the release root {prefix!r}")
    if not (member.isfile() or member.isdir()):
        kind = "link" if member.issym() or member.islnk() else "device or special file"
        raise BadInput(f"archive entry {member.name!r} is a {kind}; only files and folders are allowed")
    return name[len(prefix) + 1:]


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    src = tar.extractfile(member)
    assert src is not None
    mode = 0o755 if member.mode & 0o111 else 0o644
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise BadInput(f"archive entry {member.name!r} appears twice") from None
    with os.fdopen(fd, "wb") as out:
        while block := src.read(CHUNK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def _write_meta(stage: Path, meta: dict[str, Any]) -> None:
    with open(stage / RELEASE_META, "w") as f:
        f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_folders(stage: Path) -> None:
    """Every folder of `stage`, deepest first, so each one's entries are on disk before its parent's."""
    folders = [Path(d) for d, _, _ in os.walk(stage)]
    for folder in reversed(folders):
        fsync_dir(folder)


def unpack(archive: Path, meta: dict[str, Any], stage: Path, max_bytes: int, progress: Progress,
           source: str) -> None:
    """Unpack `archive` (the verified copy of `source`) into the new folder `stage`, durably.

    On any refusal `stage` is removed. A damaged archive is BadInput naming `source`; a write the disk
    refuses (full, read-only, failing: an OSError with an errno) is a PicoctlError saying so.
    """
    prefix = meta["root"]
    total = 0
    seen: dict[str, str] = {}
    try:
        stage.mkdir()
        with tarfile.open(archive, mode="r:gz") as tar:
            progress.phase("unpack")
            for count, member in enumerate(tar, 1):
                if count > MAX_ENTRIES:
                    raise BadInput(f"{source}: more than {MAX_ENTRIES} entries")
                rel = _target(member, prefix)
                if rel is None:
                    continue
                if member.isdir():
                    (stage / rel).mkdir(parents=True, exist_ok=True)
                    continue
                check_case_clash(rel, seen)
                total += member.size
                if total > max_bytes:
                    raise BadInput(f"{source}: unpacks to more than pi.max_archive_bytes ({max_bytes} bytes)")
                _extract(tar, member, stage / rel)
        if not (stage / "main.py").is_file():
            raise BadInput(f"{source}: no main.py at the top of the release")
        _write_meta(stage, meta)
        _fsync_folders(stage)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if exc.errno is None:  # gzip's BadGzipFile: the archive, not the disk
            raise BadInput(f"{source}: damaged archive: {exc}") from None
        raise disk_error(exc, f"{source}: cannot unpack into {stage.parent}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise BadInput(f"{source}: damaged archive: {exc}") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


REPLACED = "replaced-"  # .incoming/replaced-<version>-<pid>: a same-version release being replaced


def install(layout: Layout, stage: Path, version: str) -> Path:
    """Move an unpacked `stage` to releases/<version>, durably.

    A same-version folder already there (not current: deploying it again after a rollback) is moved
    aside first and deleted only once the new one is in place; if we are killed in between,
    `restore_replaced` puts it back, so `previous` never names a folder that is gone.
    """
    dest = layout.release_dir(version)
    old = layout.incoming / f"{REPLACED}{version}-{os.getpid()}"
    try:
        if dest.exists():
            os.replace(dest, old)
            crash_point("replaced")
        os.replace(stage, dest)
        fsync_dir(layout.releases)
        fsync_dir(layout.incoming)
    except OSError as exc:
        raise disk_error(exc, f"{dest}: cannot install the release") from None
    shutil.rmtree(old, ignore_errors=True)
    return dest


def restore_replaced(layout: Layout) -> None:
    """Put back a same-version release a killed `install` had moved aside before the new one was in place."""
    for old in layout.incoming.glob(f"{REPLACED}*"):
        version = old.name[len(REPLACED):].rsplit("-", 1)[0]
        if old.is_dir() and not old.is_symlink() and not layout.release_dir(version).exists():
            os.replace(old, layout.release_dir(version))
            fsync_dir(layout.releases)
