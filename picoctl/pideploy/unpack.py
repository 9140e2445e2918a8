"""Unpack a pi release archive safely into a private folder, then move it into `releases/<version>/`.

Every entry must sit under the archive's signed `root` prefix, have a safe name (no absolute path, no
`..`), and be a regular file or a folder: links, devices and FIFOs are refused, as are duplicate
entries and archives whose unpacked size passes `pi.max_archive_bytes`. Nothing reaches `releases/`
until the whole archive has unpacked cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from ..errors import BadInput, PicoctlError
from ..progress import Progress
from ..release import safe_member_name
from .layout import RELEASE_META, Layout, fsync_dir

MAX_ENTRIES = 100_000
CHUNK = 1 << 16


def _target(member: tarfile.TarInfo, prefix: str) -> str | None:
    """The path below the archive root for a member, or None for the root folder itself."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    safe_member_name(name)
    if name == prefix and member.isdir():
        return None
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


def unpack(archive: Path, meta: dict[str, Any], stage: Path, max_bytes: int, progress: Progress) -> None:
    """Unpack `archive` into the new folder `stage`; on any refusal `stage` is removed."""
    prefix = meta["root"]
    stage.mkdir()
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            progress.phase("unpack")
            for count, member in enumerate(tar, 1):
                if count > MAX_ENTRIES:
                    raise BadInput(f"{archive}: more than {MAX_ENTRIES} entries")
                rel = _target(member, prefix)
                if rel is None:
                    continue
                if member.isdir():
                    (stage / rel).mkdir(parents=True, exist_ok=True)
                    continue
                total += member.size
                if total > max_bytes:
                    raise BadInput(f"{archive}: unpacks to more than pi.max_archive_bytes ({max_bytes} bytes)")
                _extract(tar, member, stage / rel)
        if not (stage / "main.py").is_file():
            raise BadInput(f"{archive}: no main.py at the top of the release")
        (stage / RELEASE_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    except (tarfile.TarError, EOFError, OSError) as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise BadInput(f"{archive}: damaged archive: {exc}") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def install(layout: Layout, stage: Path, version: str) -> Path:
    """Move an unpacked `stage` to releases/<version>, replacing a same-version folder that is not current."""
    dest = layout.release_dir(version)
    if dest.exists():
        old = layout.incoming / f"replaced-{version}-{os.getpid()}"
        os.replace(dest, old)
        shutil.rmtree(old)
    try:
        os.replace(stage, dest)
    except OSError as exc:
        raise PicoctlError(f"{dest}: cannot install the release: {exc.strerror}") from None
    fsync_dir(layout.releases)
    return dest
