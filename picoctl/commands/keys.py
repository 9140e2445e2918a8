"""`picoctl keys generate`: an Ed25519 release signing keypair."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import signing
from . import COMMANDS
from .output import console


def _generate(args: argparse.Namespace) -> int:
    private_path, public_path = signing.write_keypair(Path(args.out))
    console.print(f"private key {private_path} (0600)\npublic key  {public_path}: {public_path.read_text().strip()}")
    console.print("put the public key in fleet.toml as release.public_key")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help=COMMANDS["keys"]).add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = keys.add_parser("generate", help="write release.key (0600) and release.pub")
    g.add_argument("--out", required=True, help="folder for the keypair")
    g.set_defaults(func=_generate)
