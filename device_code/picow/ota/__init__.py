"""The board's OTA agent (ota/agent.py) and what it runs on. See docs/device-agent.md.

Modules for one duty (a heartbeat, a check, the staging, the crash record, the release checks) are
loaded for it and dropped after, so their code does not take the app's RAM in between; so is the
HTTP client while a check verifies what it received."""

import gc
import sys

# The agent's transfer buffer (ota.protocol.CHUNK bytes), made when the package is first imported
# (boot.py's first import): later, with the agent's code loaded, a small heap no longer holds 4 KiB
# in one piece.
BUF = bytearray(4096)


class HTTPError(Exception):
    """The server answered, but not as expected (status, framing, size). ota/http.py raises it; it is
    kept here so it stays the same class while that module is dropped and loaded again."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def unload(*names):
    """Forget the modules ota.`name`... so the RAM their code takes is reclaimed once nothing refers to
    them; the next import loads them from flash again."""
    for name in names:
        sys.modules.pop("ota." + name, None)
        globals().pop(name, None)
    gc.collect()


def call(name, fn, *args):
    """ota.`name`.`fn`(*args), with the module loaded for this call only."""
    mod = __import__("ota." + name, None, None, (fn,))
    try:
        return getattr(mod, fn)(*args)
    finally:
        mod = None
        unload(name)
