"""One signature check of the board's trust (ota/trust.py): Ed25519 over the sha256 of the exact signed
text, signature and key in hex. Its two parts load one after the other, each for its part only: SHA-512
(ota/sha512.py) for the challenge hash, then the point arithmetic (ota/ed25519.py); the other checks
(ota/trust_check.py) are not loaded meanwhile."""

from binascii import unhexlify

import ota
from ota import hw


def problem(digest, signature, key):
    """None when `signature` (hex) is Ed25519 by `key` (hex, a key of the trusted set) over `digest`
    (the sha256 of the signed text, 32 bytes); else what is wrong with it."""
    if not isinstance(signature, str) or len(signature) != 128:
        return "signature is not 128 hex digits"
    try:
        sig = unhexlify(signature)
    except ValueError:
        return "signature is not hex"
    public = unhexlify(key)
    h = ota.call("sha512", "sha512", sig[:32] + public + digest)  # R || A || M
    if not ota.call("ed25519", "verify", public, sig, h, hw.wdt_feed):
        return "signature does not verify"
    return None
