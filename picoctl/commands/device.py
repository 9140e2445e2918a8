"""`picoctl device provision`: a new Pico W registered with the hub and its flash written."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import config, operations, provision
from ..errors import BadInput
from ..protocol import CHANNELS, DEVICE_ID_RULE
from . import COMMANDS, hub_client
from .output import add_json_flag, console, emit, progress_bar


def _provision(args: argparse.Namespace) -> int:
    if args.type != "picow":
        raise BadInput(f"device type {args.type!r} cannot be provisioned here (only picow has the OTA agent)")
    if bool(args.port) == bool(args.out):
        raise BadInput("give exactly one of --port PORT (a board on USB) or --out DIR (a folder)")
    cfg = config.load(args.config)
    hub_url = (args.hub_url or cfg.hub.public_url).rstrip("/")
    if args.out:
        provision.check_out_folder(Path(args.out))

    def register(device_id: str, type_: str) -> str:
        with hub_client(cfg) as client:
            return client.register_device(device_id, type_, args.channel)["key"]

    def deliver(files: dict[str, bytes]) -> None:
        if args.out:
            provision.write_folder(Path(args.out), files, progress)
        else:
            from ..usb.push import push_files

            push_files(args.port, files, progress)

    where = args.out or args.port
    with progress_bar(f"provision {args.id}") as progress:
        result = operations.provision(cfg, args.id, where, lambda: provision.provision(
            args.id, hub_url, register, deliver, args.wifi_ssid or "", args.wifi_password or "",
            Path(args.release) if args.release else None, mpy=not args.source, **provision.site_settings(cfg, hub_url),
        )).result
    summary = {"id": result.device_id, "version": result.version, "hub": hub_url, "destination": where,
               "files": sorted(result.files)}
    emit(args, summary, lambda s: console.print(
        f"[green]provisioned[/] {s['id']} (app {s['version']}, hub {s['hub']}): {len(s['files'])} files to {s['destination']}"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser("device", help=COMMANDS["device"])
    actions = dev.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    p = actions.add_parser("provision", help="create a device key, register it with the hub, write the board")
    p.add_argument("id", help=f"device id ({DEVICE_ID_RULE})")
    p.add_argument("--type", default="picow", help="device type (picow)")
    p.add_argument("--port", help="serial port of the board (written over the raw REPL)")
    p.add_argument("--out", help="write the board's files into this folder instead")
    p.add_argument("--wifi-ssid", help="Wi-Fi network the board joins")
    p.add_argument("--wifi-password", help="its password")
    p.add_argument("--hub-url", help="hub URL as the board reaches it (default: hub.public_url)")
    p.add_argument("--channel", default="stable", choices=CHANNELS)
    p.add_argument("--release", help="install this picow release folder instead of the bundled sample app")
    p.add_argument("--source", action="store_true", help="ship .py sources instead of .mpy (debugging)")
    add_json_flag(p)
    p.set_defaults(func=_provision)
