"""TLS to an https:// hub, trusting one certificate only: the hub's own, pinned at provisioning.

MicroPython cannot show the peer's certificate, so the pin is the trust anchor itself. Imported only
by boards whose hub is https://: the others never load the TLS stack.
"""

import ssl


def pinned_context(der):
    """A TLS client context that trusts exactly the certificate `der` (DER bytes)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=der)
    return ctx
