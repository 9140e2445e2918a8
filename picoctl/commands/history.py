"""`picoctl history`: the hub's audit log, filterable by device, version and kind."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .. import config
from ..errors import BadInput
from . import COMMANDS
from .output import add_json_flag, emit, table


def _run(args: argparse.Namespace) -> int:
    from ..client import HubClient  # imported on use: httpx stays out of `picoctl --help`

    if args.limit <= 0:
        raise BadInput(f"--limit: expected a positive number, got {args.limit}")
    with HubClient.from_config(config.load(args.config)) as client:
        events = client.history(device=args.device, version=args.version, kind=args.kind, limit=args.limit)

    def render(rows: list[dict[str, Any]]) -> None:
        table(f"{len(rows)} event(s)", ("id", "time (UTC)", "actor", "kind", "device", "version", "result", "detail"), [
            (e["id"], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["at"])), e["actor"], e["kind"],
             e["device_id"] or "", e["version"] or "", e["result"], e["detail"]) for e in rows])

    emit(args, events, render)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help=COMMANDS["history"])
    p.add_argument("--device", metavar="ID", help="only this device's events")
    p.add_argument("--version", metavar="V", help="only events about this version")
    p.add_argument("--kind", metavar="K", help="only this kind (e.g. deploy_status, security, rollout_halted)")
    p.add_argument("--limit", type=int, default=200, help="the newest N events (default: %(default)s)")
    add_json_flag(p)
    p.set_defaults(func=_run)
