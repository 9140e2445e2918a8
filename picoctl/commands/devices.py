"""`picoctl devices`: the fleet as the hub sees it; `add` registers a board, `show` details one (why it
failed included), `log` reads a Pico W's output over the air, `readings` exports one's heartbeat
readings, `remove` decommissions one."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from .. import config, diagnostics, wireless_log
from ..errors import BadInput
from ..protocol import CHANNELS, DEVICE_ID_RULE
from . import COMMANDS, hub_client
from .numbers import count, seconds
from .history import layout
from .output import add_json_flag, beneath, columns, console, emit, printable, table


def _client(args: argparse.Namespace) -> Any:
    return hub_client(config.load(args.config))


def _age(ts: float | None) -> str:
    if ts is None:
        return "never"
    return f"{wireless_log.age(time.time() - ts)} ago"


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        devices = client.devices()

    def render(rows: list[dict[str, Any]]) -> None:
        if not rows:
            console.print("no devices yet: provision a board with `picoctl device provision ID --port PORT`, or "
                          "register one with `picoctl devices add ID`", highlight=False)
            return
        print(layout_devices(rows, shutil.get_terminal_size().columns))

    emit(args, devices, render)
    return 0


FLEET = ("ID", "TYPE", "CHANNEL", "VERSION", "STATUS", "SEEN", "RSSI", "OFFER", "ERROR")
FOLDED = {"OFFER": "offer ", "ERROR": "! "}  # how a column that does not fit is said beneath its row


def _phase(offer: dict[str, Any]) -> str:
    """An offer's phase as its rollout counts it: `retrying` for a transient failure."""
    return "retrying" if offer["phase"] == "failed" and offer.get("transient") else str(offer["phase"])


def layout_devices(devices: list[dict[str, Any]], width: int) -> str:
    """One device a line in aligned columns when that fits in `width`; else the last error, then the
    offer, go beneath their device's row, wrapped: nothing is cut."""
    rows = [{"ID": printable(d["id"]), "TYPE": printable(d["type"]), "CHANNEL": printable(d["channel"]),
             "VERSION": printable(d["version"] or "-"), "STATUS": d["status"], "SEEN": _age(d["last_seen"]),
             "RSSI": "-" if d["rssi"] is None else printable(d["rssi"]),
             "OFFER": printable(f"{d['offer']['version']} {_phase(d['offer'])}") if d["offer"] else "",
             "ERROR": printable(d.get("error_summary") or "")} for d in devices]
    for inline in (FLEET, FLEET[:-1], FLEET[:-2]):
        table = columns(inline, [[r[c] or ("" if c == inline[-1] else "-") for c in inline] for r in rows])
        if all(len(line) <= width for line in table):
            break
    n = len(devices)
    out = [f"{n} device{'' if n == 1 else 's'}", table[0]]
    for r, line in zip(rows, table[1:], strict=True):
        out.append(line)
        for c in FLEET[len(inline):]:
            if r[c]:
                out.extend(beneath(FOLDED[c] + r[c], width))
    return "\n".join(out)


def _add(args: argparse.Namespace) -> int:
    with _client(args) as client:
        added = client.register_device(args.id, args.type, args.channel)

    def render(d: dict[str, Any]) -> None:
        console.print(f"[green]registered[/] {d['id']} ({d['type']}, {d['channel']})")
        console.print(f"device key (shown once; provision it over USB): {d['key']}", highlight=False)

    emit(args, added, render)
    return 0


def _remove(args: argparse.Namespace) -> int:
    with _client(args) as client:
        removed = client.remove_device(args.id)

    def render(d: dict[str, Any]) -> None:
        console.print(f"[yellow]removed[/] {d['id']} ({d['type']}, {d['version'] or 'no version'}) from the fleet: "
                      f"its key is refused from now on; its history stays (picoctl history --device {d['id']})",
                      highlight=False)

    emit(args, removed, render)
    return 0


def _show(args: argparse.Namespace) -> int:
    from rich.markup import escape  # device text is shown as text, never markup

    with _client(args) as client:
        device = client.device(args.id)

    def render(d: dict[str, Any]) -> None:
        console.print(f"[bold]{d['id']}[/]  {d['type']}  channel {d['channel']}  version {d['version'] or '-'}  "
                      f"{d['status']} (last seen {_age(d['last_seen'])})", highlight=False)
        if d["offer"]:
            o = d["offer"]
            retry = diagnostics.retry_note(o.get("retry_at"), time.time())
            console.print(f"offer     rollout {o['rollout_id']} {o['version']} seq {o['seq']}: {o['phase']}"
                          f"{f' ({retry})' if retry else ''} {escape(o['detail'])}", highlight=False)
        _diagnostics(d)
        beats = d["heartbeats"][-args.beats:]
        table(f"last {len(beats)} heartbeat(s)", ("at", "version", "uptime", "mem free", "rssi", "readings"), [
            (time.strftime("%H:%M:%S", time.gmtime(h["at"])), h["version"], h["uptime_s"], h["mem_free"], h["rssi"],
             " ".join(f"{k}={v}" for k, v in h["readings"].items())) for h in beats])
        print(layout(d["events"][-20:], shutil.get_terminal_size().columns))  # as `picoctl history` shows them

    emit(args, device, render)
    return 0


def _diagnostics(d: dict[str, Any]) -> None:
    """Firmware, boot count, reset cause and the last crash with its traceback."""
    from rich.markup import escape

    facts = diagnostics.firmware_facts(d.get("firmware") or {})
    boot = [str(d["boots"]) if d.get("boots") is not None else "",
            f"reset cause {d['reset_cause']}" if d.get("reset_cause") else ""]
    if facts:
        console.print(f"firmware  {escape(', '.join(facts))}", highlight=False)
    if any(boot):
        console.print(f"boot      {escape(', '.join(filter(None, boot)))}", highlight=False)
    error = d.get("last_error")
    if error:
        console.print(f"[red]last error[/] {escape(d['error_summary'])} (boot {error.get('boot')}, "
                      f"then reset: {escape(error.get('reset_cause') or '?')})", highlight=False)
        if error.get("traceback"):
            console.print(escape(error["traceback"].rstrip("\n")), highlight=False)


def _log(args: argparse.Namespace) -> int:
    from rich.markup import escape

    cfg = config.load(args.config)
    with hub_client(cfg) as client:
        device = client.device(args.id)
        timeout = args.timeout if args.timeout is not None else wireless_log.answer_timeout(cfg, device["type"])
        if timeout <= 0:
            raise BadInput(f"--timeout: expected a positive number of seconds, got {args.timeout}")
        got: list[wireless_log.LogLine] = []

        def show(lines: list[wireless_log.LogLine]) -> None:
            if args.json and not args.follow:
                got.extend(lines)
                return
            now = time.time()
            for x in lines:
                if args.json:
                    print(json.dumps({"id": x.id, "at": x.at, "line": x.line}), flush=True)
                else:
                    console.print(f"[dim]{time.strftime('%H:%M:%S', time.localtime(x.at))} "
                                  f"{x.age(now):>4} ago[/]  {escape(x.line)}", highlight=False)

        try:
            wireless_log.read(client, args.id, show, timeout, follow=args.follow)
        except KeyboardInterrupt:
            return 0
    if args.json and not args.follow:
        emit(args, [{"id": x.id, "at": x.at, "line": x.line} for x in got], lambda _: None)
    return 0


def _readings(args: argparse.Namespace) -> int:
    with _client(args) as client:
        beats = client.readings(args.id, args.limit)
    if args.json:  # a trace for `picoctl release smoke --readings`: one heartbeat a line
        sys.stdout.write("[\n" + ",\n".join(json.dumps(b, sort_keys=True) for b in beats) + "\n]\n")
        return 0
    table(f"{args.id}: {len(beats)} heartbeat reading(s)", ("at (UTC)", "readings"), [
        (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(b["at"])), " ".join(f"{k}={v}" for k, v in b["readings"].items()))
        for b in beats])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help=COMMANDS["devices"])
    add_json_flag(p)
    p.set_defaults(func=_list)
    actions = p.add_subparsers(dest="devices_command", metavar="ACTION")
    a = actions.add_parser("add", help="register a device and print its new key")
    a.add_argument("id", help=f"device id: {DEVICE_ID_RULE}")
    a.add_argument("--type", default="picow", help="device type from fleet.toml (default: %(default)s)")
    a.add_argument("--channel", default="stable", choices=CHANNELS)
    add_json_flag(a)
    a.set_defaults(func=_add)
    r = actions.add_parser("remove", help="decommission a device: its key stops working, its history stays")
    r.add_argument("id")
    add_json_flag(r)
    r.set_defaults(func=_remove)
    s = actions.add_parser("show", help="one device: its offer, heartbeat history and events")
    s.add_argument("id")
    s.add_argument("--beats", type=count, default=10, help="heartbeats to show (default: %(default)s)")
    add_json_flag(s)
    s.set_defaults(func=_show)
    lg = actions.add_parser("log", help="a Pico W's recent output over the air; --follow streams new lines")
    lg.add_argument("id")
    lg.add_argument("--follow", "-f", action="store_true", help="keep streaming new lines until Ctrl-C")
    lg.add_argument("--timeout", type=seconds, help="seconds to wait for the board to answer "
                                                  "(default: its heartbeat interval and a margin)")
    add_json_flag(lg)
    lg.set_defaults(func=_log)
    r = actions.add_parser("readings", help="a device's heartbeat readings, oldest first (--json: a trace to "
                                            "replay with release smoke --readings)")
    r.add_argument("id")
    r.add_argument("--limit", type=count, help="the newest N (default: every one the hub keeps)")
    add_json_flag(r)
    r.set_defaults(func=_readings)
