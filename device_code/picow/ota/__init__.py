"""The board's OTA agent (ota/agent.py) and what it runs on. See docs/device-agent.md.

Modules for one duty (a heartbeat, a check, the staging, the crash record, the release checks) are
loaded for it and dropped after, so their code does not take the app's RAM in between; so is the
HTTP client while a check verifies what it received."""

import gc
import sys

# The long-lived buffers, sized here once from the heap the board has, at the package's first import
# (boot.py's), while the heap is still in one piece: the transfer buffer (the most of an artifact held
# in RAM; heads are read in it line by line) and the log ring (ota/logring.py). A heap (gc.mem_free()
# + gc.mem_alloc()) of ROOMY bytes or more (a Pico W has about 160 KiB free with Wi-Fi up) gets 4 KiB
# and 2 KiB; a smaller one 2 KiB and 1 KiB: a download takes more, smaller reads, and a check's answer
# (about 1.7 KiB for a small release) still fits in the buffer.
ROOMY = 128 * 1024
_roomy = gc.mem_free() + gc.mem_alloc() >= ROOMY
BUF = bytearray(4096 if _roomy else 2048)
RING = 2048 if _roomy else 1024


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
