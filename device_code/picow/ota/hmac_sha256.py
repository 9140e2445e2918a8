"""HMAC-SHA256 (RFC 2104) on hashlib.sha256, streaming, for MicroPython and CPython alike."""

import hashlib
from binascii import hexlify

_BLOCK = 64


class HMAC:
    """Feed the message with update(), then take digest() or hexdigest() once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            ipad[i] = k ^ 0x36
            opad[i] = k ^ 0x5C
        self._inner = hashlib.sha256(ipad)
        self._opad = opad

    def update(self, data):
        self._inner.update(data)

    def digest(self):
        outer = hashlib.sha256(self._opad)
        outer.update(self._inner.digest())
        return outer.digest()

    def hexdigest(self):
        return hexlify(self.digest()).decode()


def mac_hex(key, data):
    """Hex HMAC-SHA256 of `data` under `key` (bytes)."""
    h = HMAC(key)
    h.update(data)
    return h.hexdigest()


def equal(a, b):
    """Compare two strings or byte strings in time independent of where they differ."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    diff = len(a) ^ len(b)
    for i in range(min(len(a), len(b))):
        diff |= a[i] ^ b[i]
    return diff == 0
