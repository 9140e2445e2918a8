"""`picoctl keys`: release and root keypairs, signed key sets, and which set each board trusts."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import config, keyset, signing
from ..errors import BadInput
from ..protocol import HEX64
from . import COMMANDS, hub_client
from .output import add_json_flag, console, emit, table


def _generate(args: argparse.Namespace) -> int:
    private_path, public_path = signing.write_keypair(Path(args.out), args.name)
    console.print(f"private key {private_path} (0600)\npublic key  {public_path}: {public_path.read_text().strip()}")
    if args.name == "root":
        console.print("keep root.key offline: it only signs new key sets (picoctl keys sign-set)")
    else:
        console.print("add the public key to the key set: picoctl keys sign-set --release …")
    return 0


def _public(value: str) -> str:
    """A public key given as 64 hex digits or as a .pub file."""
    text = value.strip().lower()
    if not HEX64.fullmatch(text):
        try:
            text = Path(value).read_text().strip().lower()
        except OSError as exc:
            raise BadInput(f"{value}: neither 64 hex digits nor a readable public key file: {exc.strerror}") from None
    if not HEX64.fullmatch(text):
        raise BadInput(f"{value}: not an Ed25519 public key (64 hex digits)")
    return text


def _keys_file(args: argparse.Namespace) -> Path:
    if args.file:
        return Path(args.file)
    cfg = config.load(args.config)
    if not cfg.release.keys_file:
        raise BadInput("release.keys_file is not set in fleet.toml; name the key set file with --file")
    return cfg.resolve(cfg.release.keys_file)


def _sign_set(args: argparse.Namespace) -> int:
    path = _keys_file(args)
    signer = signing.load_private_key(Path(args.root_key))
    current = keyset.load(path) if path.exists() else None
    root = [_public(k) for k in args.root] if args.root else list(current.root) if current else \
        [signing.public_from_private(signer)]
    envelope = keyset.make(current.version + 1 if current else 1, root, [_public(k) for k in args.release], [signer])
    new = keyset.check_successor(current, envelope) if current else keyset.check_first(envelope)
    if current and not set(new.root) & {signing.public_from_private(signer)}:
        console.print("[yellow]note:[/] the signing root key is not in the new set: it can sign no later set")
    keyset.write(path, envelope)
    revoked = sorted(set(current.release) - set(new.release)) if current else []
    summary = {"file": str(path), "version": new.version, "root": list(new.root), "release": list(new.release),
               "revoked": revoked}
    emit(args, summary, lambda s: console.print(
        f"[green]wrote[/] {s['file']}: key set v{s['version']}, {len(s['release'])} release key(s)"
        + (f", revoked {', '.join(k[:12] for k in s['revoked'])}" if s["revoked"] else "")
        + "; boards take it at their next check"))
    return 0


def _show(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    current = keyset.from_config(cfg)
    if current is None:
        raise BadInput("neither release.keys_file nor release.public_key is set in fleet.toml")
    with hub_client(cfg) as client:
        devices = [d for d in client.devices() if d["type"] == "picow"]
    boards = [{"id": d["id"], "keys": d.get("keys"),
               "state": "current" if d.get("keys") == current.version else
               "not reported" if d.get("keys") is None else
               "behind" if d["keys"] < current.version else "ahead of the hub"} for d in devices]
    summary = {"version": current.version, "root": list(current.root), "release": list(current.release),
               "boards": boards}

    def render(s: dict) -> None:
        console.print(f"key set v{s['version']}: release {', '.join(k[:16] for k in s['release'])}; "
                      f"root {', '.join(k[:16] for k in s['root']) or '(none: a bare release.public_key)'}")
        table("boards", ("device", "trusts", "state"),
              [(b["id"], "?" if b["keys"] is None else f"v{b['keys']}", b["state"]) for b in s["boards"]])

    emit(args, summary, render)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help=COMMANDS["keys"]).add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    g = keys.add_parser("generate", help="write NAME.key (0600) and NAME.pub (a release key, or --name root)")
    g.add_argument("--out", required=True, help="folder for the keypair")
    g.add_argument("--name", default="release", choices=("release", "root"), help="release (default) or root")
    g.set_defaults(func=_generate)

    s = keys.add_parser("sign-set", help="sign the next key set with a root key and write it atomically "
                                         "(rotation: list the new release keys; revocation: leave a key out)")
    s.add_argument("--root-key", required=True, help="private root key file of the current set")
    s.add_argument("--release", action="append", required=True, metavar="KEY",
                   help="a release public key (hex or .pub file) of the new set; repeat for several")
    s.add_argument("--root", action="append", metavar="KEY",
                   help="a root public key of the new set (default: the current set's)")
    s.add_argument("--file", help="the key set file (default: release.keys_file from fleet.toml)")
    add_json_flag(s)
    s.set_defaults(func=_sign_set)

    w = keys.add_parser("show", help="the current key set and the set each Pico W reports trusting")
    add_json_flag(w)
    w.set_defaults(func=_show)
