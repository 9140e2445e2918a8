"""The `picoctl` command: parses arguments and hands each subcommand to its module in commands/.

Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import PicoctlError

# Each module defines `register(subparsers)`, adding parsers whose default `func(args) -> int` runs them.
COMMAND_MODULES = ("init", "keys", "release", "pi", "rollout", "usb", "serve", "hub", "devices", "history", "device",
                   "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picoctl",
        description="Operate a fleet of Raspberry Pi Pico boards: releases, rollouts, Pi deploys, USB flashing.",
    )
    parser.add_argument("--version", action="version", version=f"picoctl {__version__}")
    parser.add_argument("--config", metavar="FILE", help="fleet.toml to use (else $PICOCTL_CONFIG, ~/.config/picoctl, /etc/picoctl)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def _tui(args: argparse.Namespace) -> int:
    """No command: the terminal UI against the hub of fleet.toml."""
    from .config import load
    from .tui.app import run_app

    return run_app(load(args.config))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
