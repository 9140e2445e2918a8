"""How the TUI writes facts: ages, sizes, times, counts of things, and the colours of states.

Every screen takes its words and colours from here, so a failure reads the same red wherever it shows.
"""

from __future__ import annotations

import time

from rich.text import Text

FAILED = "bold red"
STATUS_SYMBOL = {"online": "●", "stale": "◐", "offline": "○", "new": "·"}
STATUS_STYLE = {"online": "green", "stale": "yellow", "offline": FAILED, "new": "dim"}
# A device's phase in a rollout (picoctl.rollout.PHASES, as the hub reports them)
PHASE_STYLE = {"committed": "green", "current": "green", "failed": FAILED, "rolled_back": FAILED,
               "trial": "cyan", "switching": "cyan", "downloading": "cyan", "staged": "cyan", "checking": "cyan",
               "offered": "", "retrying": "yellow"}
ROLLOUT_STYLE = {"active": "green", "halted": FAILED, "completed": "blue", "rolled_back": "yellow"}
RESULT_STYLE = {"ok": "green", "committed": "green", "failed": FAILED, "refused": "red", "rolled_back": "yellow"}


def age(seconds: float | None) -> str:
    """A short age for people: 4s, 3m, 2h, 5d; '-' when never seen."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def seen(last_seen: float | None, now: float) -> str:
    """'seen 4s ago', or 'never seen'."""
    return "never seen" if last_seen is None else f"seen {age(now - last_seen)} ago"


def kib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.0f}K"


def hms(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def stamp(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))


def plural(n: int, word: str) -> str:
    """'1 device', '3 devices', '0 devices'."""
    return f"{n} {word if n == 1 else word + 's'}"


def status_cell(status: str, last_known: bool = False) -> Text:
    """A device's liveness; `last_known` (the hub cannot be reached) dims it and marks it with '?'."""
    if last_known:
        return Text(f"? {status}", style="dim italic", justify="left")
    return Text(f"{STATUS_SYMBOL.get(status, '?')} {status}", style=STATUS_STYLE.get(status, ""), justify="left")


def reading_cell(value: object) -> str | Text:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return Text(f"{value:.1f}", justify="right")
    return str(value) if value is not None else "-"


def shown(value: object) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)
