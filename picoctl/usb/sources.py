"""What a USB command is given: a release folder (verified; a damaged one is bad input, exit 2) or a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .. import release
from ..errors import BadInput, PicoctlError


def verified(release_dir: Path, trusted: Sequence[str] | None = None) -> dict[str, Any]:
    """The meta.json of a release folder checked against its artifact (and its signature, given the
    `trusted` release keys); BadInput naming what is wrong."""
    try:
        return release.verify(release_dir, trusted)
    except BadInput:
        raise
    except PicoctlError as exc:  # truncated, altered, badly signed: the file given is wrong, nothing was tried
        raise BadInput(str(exc)) from None


def uf2_image(path: Path) -> tuple[Path, str | None]:
    """A .uf2 file, or a pico release folder holding one (then its version is known)."""
    path = Path(path).expanduser()
    if path.is_dir():
        meta = verified(path)
        if meta.get("format") != "uf2":
            raise BadInput(f"{path}: a {meta['target']} {meta.get('format')} release has no UF2 image; use `picoctl usb push`")
        return path / meta["artifact"], meta["version"]
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    return path, None
