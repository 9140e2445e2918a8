"""One signature check of the board's trust (ota/trust.py): Ed25519 (ota/ed25519.py) over sha256 of
the exact bytes, signature and key in hex. Loaded with the Ed25519 and SHA-512 code for the check
only, while the other checks (ota/trust_check.py) are not."""

import hashlib
from binascii import unhexlify

from ota import ed25519, hw


def problem(data, signature, key):
    """None when `signature` (hex) is Ed25519 by `key` (hex, a key of the trusted set) over
    sha256(`data`); else what is wrong with it."""
    if not isinstance(signature, str) or len(signature) != 128:
        return "signature is not 128 hex digits"
    try:
        sig = unhexlify(signature)
    except ValueError:
        return "signature is not hex"
    if not ed25519.verify(unhexlify(key), sig, hashlib.sha256(data).digest(), hw.wdt_feed):
        return "signature does not verify"
    return None
