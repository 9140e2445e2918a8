"""Canonical JSON, Ed25519 release signatures and per-device HMAC-SHA256.

A signed document for boards (a release, whose body has `_type: "release"`, or a key set) is signed
as Ed25519 over the sha256 digest of its exact bytes, canonical ASCII JSON: a board hashes those
bytes with its hashlib sha256 and its SHA-512 then runs over 96 bytes (device_code/picow/ota/trust.py,
docs/trust.md). Releases built before that (no `_type`) carry Ed25519 over the canonical JSON itself;
the hub, the Pi and `usb push` still verify those, boards do not take them.

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
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import BadInput

DEVICE_KEY_BYTES = 32


RELEASE_TYPE = "release"


def canonical_json(obj: Any) -> bytes:
    """Serialise `obj` deterministically: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signed_bytes(obj: Any) -> bytes:
    """The exact bytes a board-verifiable signature covers: canonical JSON in ASCII (non-ASCII as
    \\u escapes), so the text survives being carried as a JSON string and decoded on a board."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


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


def write_keypair(out_dir: Path, name: str = "release") -> tuple[Path, Path]:
    """Write `name`.key (0600) and `name`.pub into `out_dir`, refusing to overwrite."""
    out_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for p in (private_path, public_path):
        if p.exists():
            raise BadInput(f"{p}: already exists, refusing to overwrite a key")
    private_hex, public_hex = generate_keypair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(private_hex + "\n")
        public_path.write_text(public_hex + "\n")
    except OSError:  # a full disk: no half key is left to refuse the next try
        private_path.unlink(missing_ok=True)
        public_path.unlink(missing_ok=True)
        raise
    return private_path, public_path


def sign_bytes(data: bytes, private_hex: str) -> str:
    """Ed25519 signature (hex) over sha256(`data`): what a board verifies."""
    return _private_key(private_hex).sign(hashlib.sha256(data).digest()).hex()


def verify_bytes(data: bytes, signature: Any, public_hex: str) -> bool:
    """True when `signature` (hex) is a valid sign_bytes signature of `data` under `public_hex`."""
    public = _public_key(public_hex)
    sig = _signature(signature)
    if sig is None:
        return False
    try:
        public.verify(sig, hashlib.sha256(data).digest())
    except InvalidSignature:
        return False
    return True


def _signature(signature: Any) -> bytes | None:
    if not isinstance(signature, str) or len(signature) != 128:
        return None
    try:
        return bytes.fromhex(signature)
    except ValueError:
        return None


def document_body(doc: dict[str, Any]) -> dict[str, Any]:
    """What a release signature covers: every field but `signature`."""
    return {k: v for k, v in doc.items() if k != "signature"}


def sign_document(doc: dict[str, Any], private_hex: str) -> str:
    """Ed25519 signature (hex) of `doc` without its `signature` field: over sha256 of its signed_bytes
    for a document with `_type` (what boards verify), over its canonical JSON for one without."""
    body = document_body(doc)
    if "_type" in body:
        return sign_bytes(signed_bytes(body), private_hex)
    return _private_key(private_hex).sign(canonical_json(body)).hex()


def verify_document(doc: dict[str, Any], public_hex: str) -> bool:
    """True when `doc["signature"]` is a valid signature (as sign_document makes) of the rest of `doc`."""
    body = document_body(doc)
    if "_type" in body:
        return verify_bytes(signed_bytes(body), doc.get("signature"), public_hex)
    public = _public_key(public_hex)
    sig = _signature(doc.get("signature"))
    if sig is None:
        return False
    try:
        public.verify(sig, canonical_json(body))
    except InvalidSignature:
        return False
    return True


def verify_under(doc: dict[str, Any], public_keys: Sequence[str]) -> str | None:
    """The key of `public_keys` whose signature `doc` carries (its `signed_by` when it names one), or None."""
    named = doc.get("signed_by")
    candidates = [named] if isinstance(named, str) and named in public_keys else [] if named else list(public_keys)
    for key in candidates:
        if verify_document(doc, key):
            return key
    return None


# --- per-device HMAC --------------------------------------------------------------------------

def new_device_key() -> str:
    """A fresh 32-byte device secret, hex-encoded."""
    return secrets.token_hex(DEVICE_KEY_BYTES)


def device_mac(key_hex: str, body: bytes) -> str:
    """HMAC-SHA256 of `body` under the device key, hex."""
    return hmac.new(bytes.fromhex(key_hex), body, hashlib.sha256).hexdigest()
