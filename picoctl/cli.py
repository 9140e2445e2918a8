"""The `picoctl` command: parses arguments and hands each subcommand to its module in commands/.

Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad input (the hub's refusal of it too),
130 Ctrl-C, 143 SIGTERM. Every failure ends with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from types import FrameType

from . import __version__
from .commands import COMMANDS
from .errors import PicoctlError, Terminated


def _command_in(argv: list[str]) -> str | None:
    """The command named in `argv` (after the global options), if any."""
    args = iter(argv)
    for arg in args:
        if arg == "--config":
            next(args, None)
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full sub-parser of the command `argv` names (of every command when
    `argv` is None); the others are listed by their help line, their modules left unimported.

    Each module commands.<name> defines `register(subparsers)`, adding its parser whose default
    `func(args) -> int` runs it."""
    parser = argparse.ArgumentParser(
        prog="picoctl",
        description="Operate a fleet of Raspberry Pi Pico boards: releases, rollouts, Pi deploys, USB flashing.",
    )
    parser.add_argument("--version", action="version", version=f"picoctl {__version__}")
    parser.add_argument("--config", metavar="FILE", help="fleet.toml to use (else $PICOCTL_CONFIG, ~/.config/picoctl, /etc/picoctl)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None if argv is None else _command_in(argv)
    for name, summary in COMMANDS.items():
        if argv is None or name == wanted:
            importlib.import_module(f".commands.{name}", __package__).register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _tui(args: argparse.Namespace) -> int:
    """No command: the terminal UI against the hub of fleet.toml."""
    from .config import load
    from .tui.app import run_app

    return run_app(load(args.config))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (2, said by argparse) or --help (0): the code, returned
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        args.func = _tui
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    signal.signal(signal.SIGTERM, _terminated)  # unwinds like Ctrl-C: files are left whole, children stopped
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk or a closed pipe under the output is this command's failure
        return code
    except PicoctlError as exc:
        return _fail(str(exc), exc.exit_code)
    except Terminated:
        return _fail("terminated", 128 + signal.SIGTERM, "")
    except KeyboardInterrupt:
        return _fail("interrupted", 128 + signal.SIGINT, "")
    except OSError as exc:
        return _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", 1)
    except Exception as exc:  # a defect: said in one line; PICOCTL_DEBUG=1 shows the traceback
        if os.environ.get("PICOCTL_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (PICOCTL_DEBUG=1 shows where)", 1)


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _fail(message: str, code: int, kind: str = "error: ") -> int:
    """The one line every failure ends with, on stderr."""
    try:
        sys.stdout.flush()
    except OSError:
        pass  # the output's own failure is the line below or the one before
    print(f"picoctl: {kind}{message}", file=sys.stderr)
    return code

if __name__ == "__main__":
    sys.exit(main())
