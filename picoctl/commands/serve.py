"""`picoctl serve`: run the hub (device API, operator API, event stream) until stopped."""

from __future__ import annotations

import argparse

from .. import config
from ..errors import BadInput
from . import COMMANDS


def _run(args: argparse.Namespace) -> int:
    from ..hub.app import serve  # imported on use: the server stack stays out of other commands

    cfg = config.load(args.config)
    if args.port is not None and not 0 < args.port < 65536:
        raise BadInput(f"--port: expected 1-65535, got {args.port}")
    serve(cfg, args.host, args.port)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help=COMMANDS["serve"])
    p.add_argument("--host", help="address to listen on (default: hub.listen from fleet.toml)")
    p.add_argument("--port", type=int, help="port to listen on (default: hub.port from fleet.toml)")
    p.set_defaults(func=_run)
