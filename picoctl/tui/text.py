"""How text from outside becomes screen text: what boards, the hub, USB ports and the Pi say is shown, never obeyed.

A board's error, a log line or a serial number can hold anything. Control characters (ESC starting a
terminal sequence, C1 controls, BEL), bidi overrides, zero-width characters and lone surrogates are
written as their escapes (`\\x1b`, `\\u202e`), so nothing reaches the terminal as a command or reorders
what is around it; a pile of combining marks on one character is cut to MAX_MARKS; a text longer than
MAX_CHARS is cut, saying how much was left out. Markup is never parsed from such text: the TUI's widgets
take it as plain text (markup=False, or a rich Text).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from ..drawable import drawable

MAX_CHARS = 4000  # one field (an error, a traceback, a log line, a note); the rest is said to be cut
MAX_MARKS = 2  # combining marks kept on one character


def visible(value: object, lines: bool = False) -> str:
    """`value` as text that is safe to draw: escapes for what is not printable (keeping line breaks when
    `lines`, a tab as a space), at most MAX_MARKS combining marks a character, at most MAX_CHARS characters."""
    s = value if isinstance(value, str) else str(value)
    cut = len(s) - MAX_CHARS if len(s) > MAX_CHARS else 0
    if cut:
        s = s[:MAX_CHARS]
    if not (s.isprintable() and s.isascii()):
        s = _escaped(s, lines)
    return f"{s}… ({cut} more characters)" if cut else s


def _escaped(s: str, lines: bool) -> str:
    out: list[str] = []
    marks = 0
    for ch in s.replace("\r\n", "\n"):
        if ch.isprintable():
            marks = marks + 1 if unicodedata.combining(ch) else 0
            out.append(ch if marks <= MAX_MARKS else ascii(ch)[1:-1])
        elif ch == "\n" and lines:
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        elif drawable(ch):
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


def flat(value: object) -> str:
    """`value` on one line: its line breaks as spaces, then made visible."""
    s = value if isinstance(value, str) else str(value)
    return visible(" ".join(s[: MAX_CHARS + 1].splitlines()) if "\n" in s or "\r" in s else s)


def cleaned(data: Any) -> Any:
    """JSON as the hub sent it, with every string (and every key) made `visible`, line breaks kept."""
    if isinstance(data, str):
        return visible(data, lines=True)
    if isinstance(data, dict):
        return {visible(k): cleaned(v) for k, v in data.items()}
    if isinstance(data, list):
        return [cleaned(v) for v in data]
    return data
