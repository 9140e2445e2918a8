"""`picoctl init`: a working fleet.toml, data folder, operator token, release and root keypairs and
the first release key set (signed by the root key)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..site import init_site
from . import COMMANDS
from .output import console


def _run(args: argparse.Namespace) -> int:
    path = init_site(Path(args.dir))
    console.print(f"[green]wrote[/] {path}")
    console.print(f"  operator token  {path.parent / 'operator.token'} (0600)")
    console.print(f"  release key     {path.parent / 'keys/release.key'} (0600; keep it off the Pi in production)")
    console.print(f"  root key        {path.parent / 'keys/root.key'} (0600; signs new key sets only: keep it offline)")
    console.print(f"  key set         {path.parent / 'keys/keys.json'} (v1: boards get it when provisioned)")
    console.print(f"next: [bold]PICOCTL_CONFIG={path} picoctl serve[/]")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help=COMMANDS["init"])
    p.add_argument("--dir", default="~/.config/picoctl", help="where to create them (default: %(default)s)")
    p.set_defaults(func=_run)
