"""The board's recent output, kept in RAM for wireless logs (`picoctl devices log`).

install() wraps the builtin print, so every line the app, the agent and boot.py print also goes
into a ring of RING bytes (1 or 2 KiB, after the heap), each line stamped with ticks_ms. Why not os.dupterm: the unix port the
agent is tested on has none, and on the RP2040 a dupterm stream sits in the REPL's input path too and
is detached silently the first time it raises; wrapping print costs one function call per line and
reaches everything that prints. Output written straight to sys.stdout is not kept. Bytes given to
add() that are not UTF-8 are kept as `\\xNN`.

The ring is one bytearray made at boot, so however much is printed the log takes the same RAM: a
line is a record of its ticks (4 bytes, little-endian), its length (1 byte) and its text (UTF-8, cut
to LINE_MAX characters and 255 bytes), the oldest records giving way to new ones.

When the hub asks for the log (`log_s` in a heartbeat answer), the agent posts it every STREAM_MS
(ota/logpost.py, loaded for each post, which also reads the records back: only what keeps lines and
the print hook stay loaded).
"""

import builtins
import time

import ota

RING = ota.RING  # its size, chosen from the board's heap (ota/__init__.py)
LINE_MAX = 200
STREAM_MS = 2000

_print = builtins.print
_ring = bytearray(RING)
_start = 0  # where the oldest record begins
_used = 0  # bytes the records take
_kept = 0  # lines in the ring
added = 0  # lines added since boot; the ring holds the last _kept of them
sent = 0  # lines up to this count have been posted (or dropped)
next_post = 0  # ticks_ms of the next post while the hub wants the log
_until = None  # ticks_ms until which the hub wants the log


def add(text):
    """Keep `text` (str or bytes, whose bytes that are not UTF-8 become `\\xNN`), line by line."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode()
        except UnicodeError:
            text = "".join(chr(b) if b < 0x80 else "\\x%02x" % b for b in text)
    now = time.ticks_ms()
    for line in text.split("\n"):
        if line:
            _keep(now, line[:LINE_MAX].encode())


def _keep(now, data):
    global _start, _used, _kept, added
    n = len(data)
    if n > 255:
        n = 255
        while data[n] & 0xC0 == 0x80:  # not inside a character
            n -= 1
    while _used + 5 + n > RING:
        gone = 5 + _ring[(_start + 4) % RING]
        _start = (_start + gone) % RING
        _used -= gone
        _kept -= 1
    p = (_start + _used) % RING
    for i in range(4):
        _ring[(p + i) % RING] = (now >> (8 * i)) & 0xFF
    _ring[(p + 4) % RING] = n
    q = (p + 5) % RING
    first = min(n, RING - q)
    _ring[q : q + first] = data[:first]
    if first < n:
        _ring[: n - first] = data[first:n]
    _used += 5 + n
    _kept += 1
    added += 1


def _printing(*args, **kw):
    _print(*args, **kw)
    if kw.get("file") is None:
        try:
            add(kw.get("sep", " ").join([a if isinstance(a, str) else str(a) for a in args]))
        except Exception:  # noqa: BLE001 - the log must never break a print
            pass


def install():
    builtins.print = _printing


def want(seconds):
    """The hub's wish from an answer: stream for `seconds` more (0 or None: stop)."""
    global _until
    if isinstance(seconds, int) and seconds > 0:
        _until = time.ticks_add(time.ticks_ms(), seconds * 1000)
    else:
        _until = None


def due():
    now = time.ticks_ms()
    if _until is None or time.ticks_diff(_until, now) <= 0:
        return False
    return time.ticks_diff(now, next_post) >= 0
