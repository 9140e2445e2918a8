"""Run the configured restart and smoke commands: split with shlex (no shell), bounded by a timeout.

Output goes to a temporary file rather than a pipe, so a daemon started by the restart command that
keeps our stdout open cannot hold us up.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from ..errors import BadInput

TAIL_CHARS = 300


def run(name: str, command: str, timeout_s: float, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run `command`; return '' on success, else a one-line reason naming `name`."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise BadInput(f"pi.{name}_command: cannot split {command!r}: {exc}") from None
    if not argv:
        raise BadInput(f"pi.{name}_command is empty")
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout_s, env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired:
            return f"{name} command timed out after {timeout_s:g}s: {command}"
        except OSError as exc:
            return f"{name} command could not start: {argv[0]}: {exc.strerror}"
        if proc.returncode == 0:
            return ""
        out.seek(0)
        tail = " ".join(out.read().decode(errors="replace").split())[-TAIL_CHARS:]
        return f"{name} command exited {proc.returncode}: {command}" + (f" ({tail})" if tail else "")
