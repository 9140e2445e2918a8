"""Restart command for the Pi app in the demo, tests and benchmark: what `systemctl restart` does, for one process.

    python -m picoctl.sim.pi_app_control --root ROOT --port N --pidfile FILE [--log FILE]

Stops the process named in the pid file (SIGTERM, then SIGKILL), starts `<root>/current/main.py`
detached in its own session, and writes its pid. Exits non-zero when there is no `current`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_TIMEOUT_S = 5.0


def command(root: Path | str, port: int, pidfile: Path, log: Path | None = None) -> list[str]:
    """The restart command line for an app served from `<root>/current` on 127.0.0.1:`port`."""
    argv = [sys.executable, "-m", __name__, "--root", str(root), "--port", str(port), "--pidfile", str(pidfile)]
    return argv + (["--log", str(log)] if log else [])


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not alive(pid):
            return


def start(root: Path, port: int, pidfile: Path, log: Path) -> None:
    app = root / "current" / "main.py"
    if not app.is_file():
        sys.exit(f"{app}: no current release")
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, str(app), "--host", "127.0.0.1", "--port", str(port)],
                                cwd=app.parent, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(str(proc.pid))
    os.replace(tmp, pidfile)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--pidfile", required=True, type=Path)
    parser.add_argument("--log", type=Path, default=Path(os.devnull))
    args = parser.parse_args()
    stop(args.pidfile)
    start(args.root, args.port, args.pidfile, args.log)


if __name__ == "__main__":
    main()
