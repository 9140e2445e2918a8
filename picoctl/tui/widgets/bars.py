"""The top line (screens, hub link, clock) and the banner shown while the hub cannot be reached."""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from .. import keymap
from ..format import FAILED
from ..model import Link
from ..text import visible


class TitleBar(Static):
    """`picoctl 1 Fleet 2 Releases … ● live 127.0.0.1:8470 12:00:00Z`: the current screen highlighted, the
    link, the hub the TUI is attached to and the clock. What does not fit the width is left out whole,
    the clock before the hub; the screens' names are cut to three letters only when even they and
    the link do not fit."""

    def __init__(self, current: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.current = current

    def on_mount(self) -> None:
        self.watch(self.app, "link", self._link_changed, init=False)

    def _link_changed(self, _link: object) -> None:
        self.refresh()

    def render(self) -> Text:
        width = self.size.width or 1 << 16
        link: Link = getattr(self.app, "link", Link())
        style = {"live": "green", "connecting": "yellow"}.get(link.state, FAILED)
        symbol = {"live": "● live", "connecting": "◌ connecting"}.get(link.state, "✖ hub down")
        t = self._screens(short=False)
        if t.cell_len + 2 + len(symbol) > width:
            t = self._screens(short=True)
        t.append("  ")
        t.append(symbol, style=style)
        url = visible(getattr(self.app, "hub_url", "").removeprefix("http://"))  # hub.public_url or $PICOCTL_HUB_URL
        clock = time.strftime("%H:%M:%S", time.gmtime(getattr(self.app, "clock", time.time)())) + "Z"
        room = width - t.cell_len
        for part in (url, clock):  # which hub this is matters more than the time
            if part and room >= cell_len(part) + 2:
                t.append("  " + part, style="dim")
                room -= cell_len(part) + 2
        return t

    def _screens(self, short: bool) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" picoctl ", style="bold reverse")
        accent = self.app.theme_variables.get("accent", "blue")
        for i, (mode, title) in enumerate(keymap.SCREENS, 1):
            label = f" {i} {title[:3] if short else title} "
            t.append(label, style=f"bold black on {accent}" if mode == self.current else "dim")
        return t


class LinkBanner(Static):
    """Shown while the hub or its event stream is down: the URL, the error and how to start the hub."""

    def on_mount(self) -> None:
        self.watch(self.app, "link", self._show, init=True)

    def _show(self, link: Link) -> None:
        self.display = link.down
        if self.display and link.answered:
            self.update(visible(f"✖ {link.why}; retrying. Devices show their last-known state (?).\n"
                                f"  Is {getattr(self.app, 'hub_url', '')} picoctl's hub, of the same version as this TUI?",
                                lines=True))
        elif self.display and link.slow:
            self.update(visible(f"✖ {link.why}; retrying. Devices show their last-known state (?).\n"
                                "  The hub took the connection but not its answer within the bound: is it overloaded or hung? "
                                "Its log says.", lines=True))
        elif self.display:
            url = getattr(self.app, "hub_url", "")
            self.update(visible(f"✖ hub {url} unreachable: {link.why or 'no answer'}; retrying. Devices show their last-known state (?).\n"
                                f"  Start it with `picoctl serve`, or point $PICOCTL_HUB_URL or hub.public_url at it.",
                                lines=True))
