"""`picoctl init`: a working fleet.toml, data folder, operator token and release keypair."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from .. import config, signing
from ..errors import BadInput
from . import COMMANDS
from .output import console


def init_site(directory: Path, port: int = config.DEFAULT_PORT) -> Path:
    """Create everything a hub needs under `directory`; refuse to overwrite. Returns the fleet.toml path."""
    directory = directory.expanduser()
    paths = [directory / n for n in ("fleet.toml", "operator.token", "data", "keys")]
    for p in paths:
        if p.exists():
            raise BadInput(f"{p}: already exists; refusing to overwrite (choose another --dir)")
    directory.mkdir(parents=True, exist_ok=True)
    _, public_path = signing.write_keypair(directory / "keys")
    (directory / "data").mkdir()
    fd = os.open(directory / "operator.token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    cfg = config.FleetConfig()
    cfg.hub.port = port
    cfg.hub.public_url = f"http://localhost:{port}"
    cfg.release.public_key = public_path.read_text().strip()
    cfg.release.signing_key_file = "keys/release.key"
    cfg.pi.root = "pi"
    config.save(cfg, directory / "fleet.toml")
    return directory / "fleet.toml"


def _run(args: argparse.Namespace) -> int:
    path = init_site(Path(args.dir))
    console.print(f"[green]wrote[/] {path}")
    console.print(f"  operator token  {path.parent / 'operator.token'} (0600)")
    console.print(f"  release key     {path.parent / 'keys/release.key'} (0600; keep it off the Pi in production)")
    console.print(f"next: [bold]PICOCTL_CONFIG={path} picoctl serve[/]")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help=COMMANDS["init"])
    p.add_argument("--dir", default="~/.config/picoctl", help="where to create them (default: %(default)s)")
    p.set_defaults(func=_run)
