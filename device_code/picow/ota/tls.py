"""TLS to an https:// hub, trusting one certificate only: the hub's own, pinned at provisioning.

MicroPython cannot show the peer's certificate, so the pin is the trust anchor itself. Loaded only by
boards whose hub is https:// (the others never load the TLS stack), for the agent's start.
"""

import hashlib
import ssl
from binascii import hexlify


def pinned_context(der):
    """A TLS client context that trusts exactly the certificate `der` (DER bytes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=der)
    return ctx


def pinned(cfg):
    """For an https:// hub, the context trusting only its certificate from flash, once the certificate
    matches hub_fingerprint; None when there is no usable pin (https requests then fail)."""
    try:
        with open(cfg.get("hub_cert", "hub.der"), "rb") as f:
            der = f.read()
    except OSError:
        print("ota: hub certificate missing: provision the board again")
        return None
    if hexlify(hashlib.sha256(der).digest()).decode() != cfg.get("hub_fingerprint"):
        print("ota: hub certificate does not match hub_fingerprint: provision the board again")
        return None
    return pinned_context(der)
