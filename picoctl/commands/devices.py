"""`picoctl devices`: the fleet as the hub sees it; `add` registers a board, `show` details one."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .. import config
from ..errors import BadInput
from ..protocol import CHANNELS
from .output import add_json_flag, console, emit, table


def _client(args: argparse.Namespace) -> Any:
    from ..client import HubClient  # imported on use: httpx stays out of `picoctl --help`

    return HubClient.from_config(config.load(args.config))


def _age(ts: float | None) -> str:
    if ts is None:
        return "never"
    s = max(0, int(time.time() - ts))
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago" if s < 7200 else f"{s // 3600}h ago"


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        devices = client.devices()

    def render(rows: list[dict[str, Any]]) -> None:
        table(f"{len(rows)} device(s)", ("id", "type", "channel", "version", "status", "last seen", "rssi", "offer"), [
            (d["id"], d["type"], d["channel"], d["version"] or "-", d["status"], _age(d["last_seen"]), d["rssi"],
             f"{d['offer']['version']} {d['offer']['phase']}" if d["offer"] else "")
            for d in rows])

    emit(args, devices, render)
    return 0


def _add(args: argparse.Namespace) -> int:
    with _client(args) as client:
        added = client.register_device(args.id, args.type, args.channel)

    def render(d: dict[str, Any]) -> None:
        console.print(f"[green]registered[/] {d['id']} ({d['type']}, {d['channel']})")
        console.print(f"device key (shown once; provision it over USB): {d['key']}", highlight=False)

    emit(args, added, render)
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.beats <= 0:
        raise BadInput(f"--beats: expected a positive number, got {args.beats}")
    with _client(args) as client:
        device = client.device(args.id)

    def render(d: dict[str, Any]) -> None:
        console.print(f"[bold]{d['id']}[/]  {d['type']}  channel {d['channel']}  version {d['version'] or '-'}  "
                      f"{d['status']} (last seen {_age(d['last_seen'])})", highlight=False)
        if d["offer"]:
            o = d["offer"]
            console.print(f"offer     rollout {o['rollout_id']} {o['version']} seq {o['seq']}: {o['phase']} {o['detail']}",
                          highlight=False)
        beats = d["heartbeats"][-args.beats:]
        table(f"last {len(beats)} heartbeat(s)", ("at", "version", "uptime", "mem free", "rssi", "readings"), [
            (time.strftime("%H:%M:%S", time.gmtime(h["at"])), h["version"], h["uptime_s"], h["mem_free"], h["rssi"],
             " ".join(f"{k}={v}" for k, v in h["readings"].items())) for h in beats])
        table("events", ("time (UTC)", "kind", "version", "result", "detail"), [
            (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["at"])), e["kind"], e["version"] or "", e["result"],
             e["detail"]) for e in d["events"][-20:]])

    emit(args, device, render)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="list the fleet: version, status, last heartbeat, offer")
    add_json_flag(p)
    p.set_defaults(func=_list)
    actions = p.add_subparsers(dest="devices_command", metavar="ACTION")
    a = actions.add_parser("add", help="register a device and print its new key")
    a.add_argument("id", help="device id: 1-64 letters, digits, '.', '_' or '-'")
    a.add_argument("--type", default="picow", help="device type from fleet.toml (default: %(default)s)")
    a.add_argument("--channel", default="stable", choices=CHANNELS)
    add_json_flag(a)
    a.set_defaults(func=_add)
    s = actions.add_parser("show", help="one device: its offer, heartbeat history and events")
    s.add_argument("id")
    s.add_argument("--beats", type=int, default=10, help="heartbeats to show (default: %(default)s)")
    add_json_flag(s)
    s.set_defaults(func=_show)
