"""Posting the board's log ring (ota/logring.py) while the hub asks for it, for the agent
(ota/agent.py): loaded for each post and dropped after (agent.duty()), with the code that reads the
ring's records back.

The first posts hold the ring (back to back), later ones the lines written since, at most POST_LINES
lines and POST_CHARS characters a post (under the hub's 8 KiB cap), until the hub's answer says 0.
"""

import time

from ota import logring
from ota.agent import describe

POST_LINES = 64
POST_CHARS = 3000


def run(a):
    """The duty: one post; a failure is printed, the next post comes anyway while the hub wants them."""
    try:
        yield from send(a)
    except Exception as exc:
        print("ota: log not sent:", describe(exc))


def kept():
    """The lines in the log ring, oldest first, as (ticks_ms, text): its records as logring._keep()
    wrote them."""
    ring, size = logring._ring, logring.RING
    out = []
    p = logring._start
    for _ in range(logring._kept):
        t = ring[p] | ring[(p + 1) % size] << 8 | ring[(p + 2) % size] << 16 | ring[(p + 3) % size] << 24
        n = ring[(p + 4) % size]
        q = (p + 5) % size
        data = bytes(ring[q : q + n]) if q + n <= size else bytes(ring[q:]) + bytes(ring[: q + n - size])
        out.append((t, data.decode()))
        p = (q + n) % size
    return out


def _batch():
    """(lines as [age_ms, text], lines lost before sending, count sent up to)."""
    lines = kept()
    first = logring.added - len(lines)
    start = max(logring.sent, first)
    now = time.ticks_ms()
    out, chars = [], 0
    i = start - first
    while i < len(lines) and len(out) < POST_LINES and chars + len(lines[i][1]) <= POST_CHARS:
        out.append([time.ticks_diff(now, lines[i][0]), lines[i][1]])
        chars += len(lines[i][1])
        i += 1
    return out, start - logring.sent, first + i


def send(a):
    """Post the lines not sent yet; raises what the request raises."""
    logring.next_post = time.ticks_add(time.ticks_ms(), logring.STREAM_MS)
    lines, dropped, upto = _batch()
    counter = a.counter()
    try:
        body = {"id": a.id, "counter": counter, "lines": lines, "dropped": dropped}
        resp = yield from a._post("/logs", body, True)
    except Exception as exc:
        if getattr(exc, "status", None) == 413:  # never resend what the hub refused
            logring.sent = upto
        raise
    logring.sent = upto
    if upto < logring.added:  # more waiting (the ring, at first): the next post goes at once
        logring.next_post = time.ticks_ms()
    logring.want(resp.get("log_s") if resp.get("counter") == counter else 0)
