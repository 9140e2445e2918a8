"""Canonical JSON, Ed25519 release signatures and per-device HMAC-SHA256.

The device side mirrors `device_mac` in MicroPython (device_code/picow/ota/hmac_sha256.py):
a MAC is HMAC-SHA256 over the exact bytes of an HTTP body, sent hex-encoded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import BadInput

DEVICE_KEY_BYTES = 32


def canonical_json(obj: Any) -> bytes:
    """Serialise `obj` deterministically: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_file(path: Path, chunk: int = 1 << 16) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- Ed25519 release keys ---------------------------------------------------------------------

def generate_keypair() -> tuple[str, str]:
    """A new release keypair as (private hex, public hex)."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw().hex()
    return seed, private.public_key().public_bytes_raw().hex()


def _private_key(private_hex: str) -> Ed25519PrivateKey:
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private_hex.strip()))
    except ValueError as exc:
        raise BadInput(f"not an Ed25519 private key (64 hex digits expected): {exc}") from None


def _public_key(public_hex: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex.strip()))
    except ValueError as exc:
        raise BadInput(f"not an Ed25519 public key (64 hex digits expected): {exc}") from None


def public_from_private(private_hex: str) -> str:
    return _private_key(private_hex).public_key().public_bytes_raw().hex()


def load_private_key(path: Path) -> str:
    """Read a private key file written by `picoctl keys generate`."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read signing key: {exc.strerror}") from None
    _private_key(text)
    return text


def write_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write release.key (0600) and release.pub into `out_dir`, refusing to overwrite."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / "release.key", out_dir / "release.pub"
    for p in (private_path, public_path):
        if p.exists():
            raise BadInput(f"{p}: already exists, refusing to overwrite a key")
    private_hex, public_hex = generate_keypair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(private_hex + "\n")
    public_path.write_text(public_hex + "\n")
    return private_path, public_path


def sign_document(doc: dict[str, Any], private_hex: str) -> str:
    """Ed25519 signature (hex) over the canonical JSON of `doc` without its `signature` field."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    return _private_key(private_hex).sign(canonical_json(body)).hex()


def verify_document(doc: dict[str, Any], public_hex: str) -> bool:
    """True when `doc["signature"]` is a valid signature of the rest of `doc`."""
    signature = doc.get("signature")
    if not isinstance(signature, str):
        return False
    try:
        sig = bytes.fromhex(signature)
    except ValueError:
        return False
    body = {k: v for k, v in doc.items() if k != "signature"}
    try:
        _public_key(public_hex).verify(sig, canonical_json(body))
    except InvalidSignature:
        return False
    return True


# --- per-device HMAC --------------------------------------------------------------------------

def new_device_key() -> str:
    """A fresh 32-byte device secret, hex-encoded."""
    return secrets.token_hex(DEVICE_KEY_BYTES)


def device_mac(key_hex: str, body: bytes) -> str:
    """HMAC-SHA256 of `body` under the device key, hex."""
    return hmac.new(bytes.fromhex(key_hex), body, hashlib.sha256).hexdigest()


def check_device_mac(key_hex: str, body: bytes, mac_hex: str) -> bool:
    """Constant-time comparison of a received MAC against the expected one."""
    return hmac.compare_digest(device_mac(key_hex, body), mac_hex.lower())
