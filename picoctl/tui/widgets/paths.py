"""Path prompts' help: the newest UF2 file or release folder near the operator as the default, and
completion of what is typed (a Textual suggester: → or end takes it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from textual.suggester import Suggester

UF2 = "uf2"  # files ending in .uf2
RELEASE = "release"  # folders holding a meta.json of a pico or picow release
DEVICE_TARGETS = ("pico", "picow")


def _is_release(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("target") in DEVICE_TARGETS


def fits(path: Path, kind: str) -> bool:
    """A UF2 file, or a device release folder."""
    return path.is_file() and path.suffix.lower() == ".uf2" if kind == UF2 else path.is_dir() and _is_release(path)


def newest(folders: Iterable[Path], kind: str) -> Path | None:
    """The most recently changed UF2 file or release folder in `folders` or one level below them."""
    found: list[tuple[float, str, Path]] = []
    for folder in dict.fromkeys(f.expanduser() for f in folders):
        top = _entries(folder)
        for p in [folder, *top, *(q for d in top if d.is_dir() for q in _entries(d))]:
            try:
                if fits(p, kind):
                    found.append((p.stat().st_mtime, str(p), p))
            except OSError:
                continue
    return max(found)[2] if found else None


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
