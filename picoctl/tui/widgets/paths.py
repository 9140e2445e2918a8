"""Path prompts' help: the newest UF2 file or release folder near the operator as the default, and
completion of what is typed (a Textual suggester: → or end takes it): paths, and for Pi releases the
release folders near the operator, the newest version first."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from textual.suggester import Suggester

from ...release import BOARD_TARGETS, SEMVER, version_key

UF2 = "uf2"  # files ending in .uf2
RELEASE = "release"  # folders holding a meta.json of a pico or picow release
PI = "pi"  # folders holding a meta.json of a pi release
TARGETS = {RELEASE: BOARD_TARGETS, PI: ("pi",)}


def _release_version(folder: Path, kind: str) -> str | None:
    """The version of the release of `kind` in `folder`, or None if it holds none."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("target") not in TARGETS.get(kind, ()):
        return None
    return str(meta.get("version") or "")


def fits(path: Path, kind: str) -> bool:
    """A UF2 file, or a release folder of `kind`."""
    if kind == UF2:
        return path.is_file() and path.suffix.lower() == ".uf2"
    return path.is_dir() and _release_version(path, kind) is not None


def near(folders: Iterable[Path], kind: str) -> list[Path]:
    """The UF2 files or release folders of `kind` in `folders` or one level below them."""
    found: list[Path] = []
    for folder in dict.fromkeys(f.expanduser() for f in folders):
        top = _entries(folder)
        for p in [folder, *top, *(q for d in top if d.is_dir() for q in _entries(d))]:
            try:
                if fits(p, kind):
                    found.append(p)
            except OSError:
                continue
    return found


def newest(folders: Iterable[Path], kind: str) -> Path | None:
    """The most recently changed UF2 file or release folder near (`near`)."""
    dated = []
    for p in near(folders, kind):
        try:
            dated.append((p.stat().st_mtime, str(p), p))
        except OSError:
            continue
    return max(dated)[2] if dated else None


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def shown(path: Path) -> str:
    """`path` as typed from the working folder when it is under it, else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class PathSuggester(Suggester):
    """Completes the last part of a path to the first entry (sorted) that starts with it: folders (with a
    `/`), and files only of `kind` UF2. Hidden entries only when the part typed starts with `.`."""

    def __init__(self, kind: str) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.kind = kind

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, _, part = value.rpartition("/")
        folder = Path(os.path.expanduser(head + "/" if head or value.startswith("/") else "."))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return None
        for e in entries:
            if not e.name.startswith(part) or (e.name.startswith(".") and not part.startswith(".")):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:
                continue
            if is_dir or (self.kind == UF2 and e.name.lower().endswith(".uf2")):
                return value + e.name[len(part):] + ("/" if is_dir else "")
        return None


class ReleaseSuggester(PathSuggester):
    """Completes what is typed to a release folder of `kind` near (`near`) whose path, as shown, starts
    with it, the highest version first (`re` → `releases/pi-2.4.0`, `releases/pi-2.3` → `releases/pi-2.3.0`);
    else to a path, as PathSuggester does."""

    def __init__(self, kind: str, folders: Iterable[Path]) -> None:
        super().__init__(kind)
        self.folders = list(folders)

    async def get_suggestion(self, value: str) -> str | None:
        found = []
        for p in near(self.folders, self.kind):
            version = _release_version(p, self.kind) or ""
            found.append(((1, version_key(version)) if SEMVER.match(version) else (0, ()), shown(p)))
        for _, path in sorted(found, reverse=True):
            if value and path.startswith(value) and path != value:
                return path
        return await super().get_suggestion(value)
