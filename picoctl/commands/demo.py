"""`picoctl demo [--devices N] [--no-tui]`: the whole system on a simulated fleet, then the TUI."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from . import COMMANDS


STOP = (signal.SIGTERM, signal.SIGHUP)


def _leave(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP (the SSH link gone): unwind like Ctrl+C so that the demo cleans up."""
    raise KeyboardInterrupt


def _hold_signals() -> None:
    """From here on the demo is stopping: a further signal waits for the cleanup instead of cutting it short."""
    for sig in (*STOP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


def picoctl_command() -> str:
    """How another shell runs this picoctl: `picoctl` when that is the one on PATH, else its full path
    (after `make demo` it is in the project's venv, which is not on PATH)."""
    here = Path(sys.argv[0]).resolve()
    found = shutil.which("picoctl")
    if found and Path(found).resolve() == here:
        return "picoctl"
    if here.name == "picoctl":
        return shlex.quote(str(here))
    return f"{shlex.quote(sys.executable)} -m picoctl"


def _run(args: argparse.Namespace) -> int:
    from ..demo import Demo

    previous = {sig: signal.signal(sig, _leave) for sig in (*STOP, signal.SIGINT)}
    print("starting the demo: a hub, Pico W boards, a USB Pico, the Pi app…", file=sys.stderr)
    try:
        with Demo(devices=args.devices, log=lambda line: print(f"  {line}", file=sys.stderr)) as demo:
            try:
                if args.no_tui:
                    print(f"ready: PICOCTL_CONFIG={demo.config_path} {picoctl_command()}   (Ctrl+C stops the demo)",
                          flush=True)
                    threading.Event().wait()
                from ..tui.app import run_app

                assert demo.cfg is not None
                home = os.getcwd()
                os.chdir(demo.root)  # so that the demo's files are short relative paths in the TUI's prompts
                try:
                    # logs saved with w go where the demo started, to outlive its folder; the TUI ends on q,
                    # on SIGTERM, SIGHUP or SIGINT, and when its terminal goes
                    run_app(demo.cfg, saves=Path(home))
                finally:
                    os.chdir(home)
            finally:
                _hold_signals()
    except KeyboardInterrupt:
        pass  # Ctrl+C (or SIGTERM, SIGHUP) is how the demo ends; leaving the `with` has cleaned up
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        print(f"demo stopped: nothing left running, its folder removed (logs saved with w are in {os.getcwd()})",
              file=sys.stderr)
    except OSError:
        pass  # the terminal is gone: nobody to tell
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=COMMANDS["demo"])
    p.add_argument("--devices", type=int, default=8, metavar="N", help="how many Pico W to simulate (default 8)")
    p.add_argument("--no-tui", action="store_true",
                   help="run the demo fleet without the TUI (attach with the printed command) until Ctrl+C")
    p.set_defaults(func=_run)
