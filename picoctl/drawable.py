"""Which characters of text from outside (a board, the hub, a USB port) may reach a terminal as they are.

Control characters (C0 and C1: ESC starts a terminal sequence), format characters (bidi overrides,
zero-width characters), line and paragraph separators and lone surrogates may not: drawn, they would
command the terminal or reorder what is around them. Spaces, private-use glyphs and characters newer
than this Python's tables may. The CLI (picoctl.commands.output) and the TUI (picoctl.tui.text) each
write the others in their own way.
"""

from __future__ import annotations

import unicodedata

_SHOWN_AS_IS = ("Zs", "Co", "Cn")  # spaces, private-use glyphs and characters newer than this Python's tables


def drawable(ch: str) -> bool:
    """Whether the character `ch` may be written to a terminal as it is."""
    return ch.isprintable() or unicodedata.category(ch) in _SHOWN_AS_IS
