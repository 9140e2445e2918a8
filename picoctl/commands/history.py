"""`picoctl history`: the hub's audit log, filterable by device, version and kind."""

from __future__ import annotations

import argparse
import shutil
import time
from typing import Any

from .. import config
from . import COMMANDS, hub_client
from .numbers import count
from .output import add_json_flag, beneath, columns, emit, printable


def _run(args: argparse.Namespace) -> int:
    with hub_client(config.load(args.config)) as client:
        events = client.history(device=args.device, version=args.version, kind=args.kind, limit=args.limit)

    filtered = args.device or args.version or args.kind
    emit(args, events, lambda rows: print(layout(rows, shutil.get_terminal_size().columns) if rows else
                                          "no events match these filters" if filtered else "no events yet"))
    return 0


WIDE = ("ID", "TIME", "ACTOR", "KIND", "DEVICE", "VERSION", "RESULT", "DETAIL")
NARROW = ("ID", "TIME", "KIND", "DEVICE", "VERSION", "RESULT")  # then "actor: detail" beneath


def layout(events: list[dict[str, Any]], width: int) -> str:
    """The events in aligned columns under a line for each day (times UTC), one event a line when every
    one fits in `width`; else the actor and detail go under their row, wrapped: nothing is cut."""
    def cells(e: dict[str, Any]) -> dict[str, str]:
        return {"ID": str(e["id"]), "TIME": time.strftime("%H:%M:%S", time.gmtime(e["at"])),
                "ACTOR": printable(e["actor"]), "KIND": printable(e["kind"]),
                "DEVICE": printable(e["device_id"] or "-"), "VERSION": printable(e["version"] or "-"),
                "RESULT": printable(e["result"] or "-"), "DETAIL": printable(e["detail"] or "")}

    rows = [cells(e) for e in events]

    def lines(names: tuple[str, ...]) -> list[str]:
        return columns(names, [[r[c] for c in names] for r in rows])

    wide = lines(WIDE)
    inline = all(len(line) <= width for line in wide)
    table = wide if inline else lines(NARROW)
    n, day = len(events), ""
    out = [f"{n} event{'' if n == 1 else 's'} (UTC)", table[0]]
    for e, r, line in zip(events, rows, table[1:], strict=True):
        if time.strftime("%Y-%m-%d", time.gmtime(e["at"])) != day:
            day = time.strftime("%Y-%m-%d", time.gmtime(e["at"]))
            out.append(day)
        out.append(line)
        if not inline:
            out.extend(beneath(f"{r['ACTOR']}: {r['DETAIL']}" if r["DETAIL"] else r["ACTOR"], width))
    return "\n".join(out)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help=COMMANDS["history"])
    p.add_argument("--device", metavar="ID", help="only this device's events")
    p.add_argument("--version", metavar="V", help="only events about this version")
    p.add_argument("--kind", metavar="K", help="only this kind (e.g. deploy_status, security, rollout_halted)")
    p.add_argument("--limit", type=count, default=200, help="the newest N events (default: %(default)s)")
    add_json_flag(p)
    p.set_defaults(func=_run)
