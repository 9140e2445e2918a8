"""The top line (screens, hub link, clock) and the banner shown while the hub cannot be reached."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from .. import keymap


class TitleBar(Static):
    """`picoctl │ 1 Fleet 2 Releases … │ ● live`: the current screen highlighted, the link state at the right."""

    def __init__(self, current: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.current = current

    def on_mount(self) -> None:
        self.watch(self.app, "link", lambda _: self.refresh(), init=False)

    def render(self) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" picoctl ", style="bold reverse")
        narrow = self.size.width and self.size.width < 70
        accent = self.app.theme_variables.get("accent", "blue")
        for i, (mode, title) in enumerate(keymap.SCREENS, 1):
            label = f" {i} {title[:3] if narrow else title} "
            t.append(label, style=f"bold black on {accent}" if mode == self.current else "dim")
        link = getattr(self.app, "link", "")
        state = link.split(":")[0]
        style = {"live": "green", "connecting": "yellow"}.get(state, "bold red")
        symbol = {"live": "● live", "connecting": "◌ connecting"}.get(state, "✖ hub down")
        t.append("  ")
        t.append(symbol, style=style)
        clock = getattr(self.app, "clock", time.time)
        t.append("   " + time.strftime("%H:%M:%S", time.gmtime(clock())) + "Z", style="dim")
        return t


class LinkBanner(Static):
    """Shown while the hub or its event stream is down: the URL, the error and how to start the hub."""

    def on_mount(self) -> None:
        self.watch(self.app, "link", self._show, init=True)

    def _show(self, link: str) -> None:
        state, _, why = link.partition(":")
        self.display = state == "down"
        if self.display:
            url = getattr(self.app, "hub_url", "")
            why = why.strip().removeprefix(f"hub not reachable at {url}:").strip() or "no answer"
            self.update(f"✖ hub {url} unreachable: {why}; retrying.\n"
                        f"  Start it with `picoctl serve` (or `systemctl start picoctl-hub`).")
