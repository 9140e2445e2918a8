"""A Pico W's output over the air, in the viewer USB boards have: the lines the board kept (its ring)
and then new ones, each marked with its time and how old it was when it came."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer

from .. import keymap
from ..widgets.serial_view import SerialView
from .base import ModelScreen


class DeviceLogScreen(ModelScreen):
    BINDINGS = [*keymap.DEVICE_LOG]

    def __init__(self, device_id: str, device_type: str) -> None:
        super().__init__()
        self.device_id, self.device_type = device_id, device_type

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield SerialView(what="wireless", id="serial")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        view = self.query_one(SerialView)
        view.follow(f"{self.device_id} (asking the board…)",
                    self.source.device_log_reader(self.device_id, self.device_type, view.feed, view.link))

    def action_back(self) -> None:
        self.query_one(SerialView).stop()
        self.dismiss()

    def action_pause(self) -> None:
        self.query_one(SerialView).toggle_pause()

    def action_clear(self) -> None:
        self.query_one(SerialView).clear()
