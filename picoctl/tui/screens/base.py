"""What every screen shares: the title bar, the hub banner, the model, and the update hooks the app calls."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Input

from ..model import Event, FleetModel
from ..widgets.bars import LinkBanner, TitleBar


class ModelScreen(Screen[None]):
    """A screen rendering the app's FleetModel; `apply_changes` gets each flush, `tick` each second."""

    MODE = "fleet"

    @property
    def model(self) -> FleetModel:
        return self.app.model  # type: ignore[attr-defined]

    @property
    def source(self) -> Any:
        return self.app.source  # type: ignore[attr-defined]

    def top(self) -> ComposeResult:
        yield TitleBar(self.MODE, id="titlebar")
        yield LinkBanner(id="banner")

    def on_screen_resume(self) -> None:
        self.sync()

    def sync(self) -> None:
        """Bring every widget up to date with the model (on first show and when shown again)."""

    def apply_changes(self, changed: set[str], removed: set[str], events: list[Event], topics: set[str]) -> None:
        """Update what the changes touch; called only while the screen is in the current stack."""

    @property
    def ready(self) -> bool:
        """Composed and not being torn down: the app may hand it changes."""
        return self.is_mounted and not self._closing and bool(self.query("#titlebar"))

    def tick(self) -> None:
        self.query_one(TitleBar).refresh()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_changed(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.focus_next()

    def key_escape(self) -> None:
        box = self.query("#filter")
        if box and box.first().has_focus:
            box.first().value = ""
            box.first().display = False
            self.focus_next()

    def filter_changed(self, text: str) -> None:
        """The filter box's text changed."""

    def fail(self, message: str) -> None:
        self.app.notify(message, severity="error", timeout=8)
