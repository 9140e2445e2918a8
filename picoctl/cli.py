"""The `picoctl` command: parses arguments and hands each subcommand to its module in commands/.

Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .commands import COMMANDS
from .errors import PicoctlError


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
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = _tui
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PicoctlError as exc:
        print(f"picoctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("picoctl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
