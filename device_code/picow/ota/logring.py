"""The board's recent output, kept in RAM for wireless logs (`picoctl devices log`).

install() wraps the builtin print, so every line the app, the agent and boot.py print also goes
into a ring of the last RING_CHARS characters, each line stamped with ticks_ms. Why not os.dupterm:
the unix port the agent is tested on has none, and on the RP2040 a dupterm stream sits in the
REPL's input path too and is detached silently the first time it raises; wrapping print costs one
function call per line and reaches everything that prints. Output written straight to sys.stdout
is not kept. Bytes given to add() that are not UTF-8 are kept as `\\xNN`.

When the hub asks for the log (`log_s` in a heartbeat answer), the agent calls send() every
STREAM_MS: the first posts hold the ring (back to back), later ones the lines written since, at most
POST_LINES lines and POST_CHARS characters a post (under the hub's 8 KiB cap), until the hub's answer
says 0.
"""

import builtins
import time

RING_CHARS = 2048
LINE_MAX = 200
POST_LINES = 64
POST_CHARS = 3000
STREAM_MS = 2000

_print = builtins.print
_lines = []  # [ticks_ms, text], oldest first
_chars = 0
_added = 0  # lines added since boot; the ring holds the last len(_lines)
_sent = 0  # lines up to this count have been sent (or dropped)
_until = None  # ticks_ms until which the hub wants the log
_next = 0


def safe_decode(data):
    """`data` as text; bytes that are not UTF-8 become `\\xNN`."""
    try:
        return bytes(data).decode()
    except UnicodeError:
        return "".join(chr(b) if b < 0x80 else "\\x%02x" % b for b in data)


def add(text):
    """Keep `text` (str or bytes), line by line, each cut to LINE_MAX characters."""
    global _chars, _added
    if isinstance(text, (bytes, bytearray)):
        text = safe_decode(text)
    now = time.ticks_ms()
    for line in text.split("\n"):
        if not line:
            continue
        line = line[:LINE_MAX]
        _lines.append([now, line])
        _chars += len(line)
        _added += 1
    while _chars > RING_CHARS and _lines:
        _chars -= len(_lines.pop(0)[1])


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
    return time.ticks_diff(now, _next) >= 0


def _batch():
    """(lines as [age_ms, text], lines lost before sending, count sent up to)."""
    first = _added - len(_lines)
    start = max(_sent, first)
    now = time.ticks_ms()
    out, chars = [], 0
    i = start - first
    while i < len(_lines) and len(out) < POST_LINES and chars + len(_lines[i][1]) <= POST_CHARS:
        out.append([time.ticks_diff(now, _lines[i][0]), _lines[i][1]])
        chars += len(_lines[i][1])
        i += 1
    return out, start - _sent, first + i


def send(agent):
    """Post the lines not sent yet (see the module's docstring), as a step of the agent's cooperative
    loop (a generator); raises what the request raises."""
    global _sent, _next
    _next = time.ticks_add(time.ticks_ms(), STREAM_MS)
    lines, dropped, upto = _batch()
    counter = agent.counter()
    try:
        body = {"id": agent.id, "counter": counter, "lines": lines, "dropped": dropped}
        resp = yield from agent._post("/logs", body, True)
    except Exception as exc:
        if getattr(exc, "status", None) == 413:  # never resend what the hub refused
            _sent = upto
        raise
    _sent = upto
    if upto < _added:  # more waiting (the ring, at first): the next post goes at once
        _next = time.ticks_ms()
    want(resp.get("log_s") if resp.get("counter") == counter else 0)
