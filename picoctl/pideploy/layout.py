"""Where a Pi deploy keeps things under `pi.root`, and the two links that name releases."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import fsync_dir
from ..config import FleetConfig
from ..errors import PicoctlError
from ..release import SEMVER

RELEASE_META = ".picoctl-release.json"  # the verified meta.json, written into each unpacked release


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def of(cls, cfg: FleetConfig) -> Layout:
        return cls(cfg.resolve(cfg.pi.root))

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def previous(self) -> Path:
        return self.root / "previous"

    @property
    def incoming(self) -> Path:
        """Downloads and half-unpacked releases; emptied by every deploy."""
        return self.root / ".incoming"

    @property
    def journal(self) -> Path:
        return self.root / ".deploy-journal.json"

    @property
    def lock(self) -> Path:
        return self.root / ".deploy.lock"

    def release_dir(self, version: str) -> Path:
        return self.releases / version

    def ensure(self) -> None:
        """Create the folders; refuse a `current` that is a real folder (an install made by copying)."""
        try:
            for p in (self.releases, self.incoming):
                p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PicoctlError(f"{exc.filename}: cannot create: {exc.strerror} (is pi.root writable by this account?)") from None
        for link in (self.current, self.previous):
            if link.exists() and not link.is_symlink():
                raise PicoctlError(f"{link} is not a link; move it into {self.releases}/<version>/ (see docs/pi-deploy.md)")
            if link.is_symlink() and not _names_a_release(os.readlink(link)):
                raise PicoctlError(f"{link} points at {os.readlink(link)!r}, not at releases/<version>: move that release "
                                   f"into {self.releases}/<version>/ and point {link.name} at it (see docs/pi-deploy.md)")


def _names_a_release(target: str) -> bool:
    """Whether a link's target has the form picoctl writes: `releases/<version>`."""
    folder, _, version = target.partition("/")
    return folder == "releases" and SEMVER.match(version) is not None


def disk_error(exc: OSError, doing: str) -> PicoctlError:
    """One line for a write the Pi's disk refused (full, read-only, failing); exit 1, as any failure."""
    return PicoctlError(f"{doing}: {exc.strerror or exc}")


def linked_version(link: Path) -> str | None:
    """The version a `current`/`previous` link names, or None when there is no link."""
    try:
        return Path(os.readlink(link)).name
    except (FileNotFoundError, OSError):
        return None


def point(link: Path, version: str | None) -> None:
    """Make `link` name releases/<version> atomically (a new link renamed over the old); None removes it."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        if version is None:
            link.unlink(missing_ok=True)
        else:
            tmp.unlink(missing_ok=True)
            os.symlink(f"releases/{version}", tmp)
            os.replace(tmp, link)
        fsync_dir(link.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, f"{link}: cannot point it at {version or 'nothing'}") from None
