"""The release key set: which keys may sign releases, and which root keys may sign the next set.

A small form of TUF's root/targets split. The set is a JSON envelope
`{"signed": "<canonical ASCII JSON text>", "signatures": [{"key": <hex>, "sig": <hex>}]}` whose signed
text is `{"_type": "keys", "version": N, "root": [<hex>...], "release": [<hex>...]}`. Each signature
is Ed25519 over sha256 of the signed text (signing.sign_bytes). A set is valid when a root key of the
set before it signed it (the first set: one of its own root keys) and its version is higher. The root
key can stay offline: it only ever signs a new set. Boards apply new sets with the same rules
(device_code/picow/ota/trust.py); see docs/trust.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import atomic, signing
from .config import FleetConfig
from .errors import BadInput
from .protocol import HEX64

KEYS_TYPE = "keys"
MAX_KEYS = 8  # per list: a board holds the set in RAM


@dataclass(frozen=True)
class KeySet:
    version: int
    root: tuple[str, ...]
    release: tuple[str, ...]
    envelope: dict[str, Any] | None  # as boards get it; None for a bare release.public_key

    @property
    def label(self) -> str:
        """How the set is named to an operator: its version and its release keys' prefixes."""
        return f"v{self.version} ({', '.join(k[:12] for k in self.release)})"


def make(version: int, root: list[str], release: list[str], signer_hexes: list[str]) -> dict[str, Any]:
    """A signed key set envelope; `signer_hexes` are the private root keys that sign it."""
    if not isinstance(version, int) or version < 1:
        raise BadInput(f"key set version {version!r}: expected a positive integer")
    for name, keys in (("root", root), ("release", release)):
        _check_keys(keys, name)
    body = {"_type": KEYS_TYPE, "version": version, "root": sorted(set(root)), "release": sorted(set(release))}
    text = signing.signed_bytes(body)
    sigs = [{"key": signing.public_from_private(k), "sig": signing.sign_bytes(text, k)} for k in signer_hexes]
    return {"signed": text.decode(), "signatures": sigs}


def _check_keys(keys: Any, name: str) -> None:
    if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS:
        raise BadInput(f"key set {name}: expected a list of 1 to {MAX_KEYS} public keys")
    for k in keys:
        if not isinstance(k, str) or not HEX64.fullmatch(k):
            raise BadInput(f"key set {name}: {k!r} is not an Ed25519 public key (64 lowercase hex digits)")


def parse(envelope: Any, where: str = "key set") -> tuple[KeySet, list[str]]:
    """The set an envelope holds and the keys whose signature on it verifies; refuses malformed ones."""
    if not (isinstance(envelope, dict) and isinstance(envelope.get("signed"), str)
            and isinstance(envelope.get("signatures"), list)):
        raise BadInput(f"{where}: expected {{\"signed\": <text>, \"signatures\": [...]}}")
    text = envelope["signed"].encode()
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{where}: signed text is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("_type") != KEYS_TYPE:
        raise BadInput(f"{where}: not a key set (_type {body.get('_type') if isinstance(body, dict) else None!r})")
    if signing.signed_bytes(body) != text:
        raise BadInput(f"{where}: signed text is not in canonical form")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BadInput(f"{where}: version must be a positive integer")
    _check_keys(body.get("root"), "root")
    _check_keys(body.get("release"), "release")
    signers = []
    for s in envelope["signatures"]:
        if isinstance(s, dict) and isinstance(s.get("key"), str) and HEX64.fullmatch(s["key"]) \
                and signing.verify_bytes(text, s.get("sig"), s["key"]):
            signers.append(s["key"])
    return KeySet(version, tuple(body["root"]), tuple(body["release"]), envelope), signers


def check_first(envelope: Any, where: str = "key set") -> KeySet:
    """A first set (provisioning, a new site): signed by one of its own root keys."""
    ks, signers = parse(envelope, where)
    if not set(signers) & set(ks.root):
        raise BadInput(f"{where}: not signed by any of its own root keys")
    return ks


def check_successor(current: KeySet, envelope: Any, where: str = "key set") -> KeySet:
    """`envelope` as the set after `current`: signed by a root key of `current`, a higher version."""
    ks, signers = parse(envelope, where)
    if not set(signers) & set(current.root):
        raise BadInput(f"{where}: not signed by a root key of the current set {current.label}")
    if ks.version <= current.version:
        raise BadInput(f"{where}: version {ks.version} is not above the current set's {current.version}")
    return ks


def load(path: Path) -> KeySet:
    """A key set file, checked as a first set (a site trusts its own file)."""
    try:
        envelope = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no key set here (picoctl keys sign-set writes one)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{path}: not a readable key set: {exc}") from None
    return check_first(envelope, str(path))


def write(path: Path, envelope: dict[str, Any]) -> None:
    """Write a key set file atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(envelope, indent=1) + "\n", prefix=".keys-")


def from_config(cfg: FleetConfig) -> KeySet | None:
    """The site's current set: release.keys_file, else release.public_key alone (version 0, nothing
    for boards), else None."""
    if cfg.release.keys_file:
        return load(cfg.resolve(cfg.release.keys_file))
    if cfg.release.public_key:
        key = cfg.release.public_key.strip().lower()
        return KeySet(0, (), (key,), None)
    return None


_cache: dict[Path, tuple[int, KeySet]] = {}


def newer_for(cfg: FleetConfig, board_version: int | None) -> dict[str, Any] | None:
    """The site's key set envelope for a board that trusts an older one (it reports the version it
    has; a board that reports none gets nothing: it predates key sets). Read again when the file changes."""
    if not cfg.release.keys_file or board_version is None:
        return None
    path = cfg.resolve(cfg.release.keys_file)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _cache.get(path)
    if cached is None or cached[0] != mtime:
        try:
            cached = (mtime, load(path))
        except BadInput:
            return None
        _cache[path] = cached
    ks = cached[1]
    return ks.envelope if ks.version > board_version else None


def trusted_or_none(cfg: FleetConfig | None) -> tuple[str, ...] | None:
    """The site's release keys, or None without fleet.toml or keys (USB work then checks hashes only)."""
    ks = from_config(cfg) if cfg is not None else None
    return ks.release if ks is not None else None


def release_keys(cfg: FleetConfig, what: str) -> tuple[str, ...]:
    """The keys releases may be signed with, or a clear error naming what needs them."""
    ks = from_config(cfg)
    if ks is None:
        raise BadInput(f"release.public_key is not set in fleet.toml (nor release.keys_file); {what} needs it to verify releases")
    return ks.release
