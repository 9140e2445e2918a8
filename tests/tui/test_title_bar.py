"""The top line at the widths an operator's terminal has: the screens' names whole, then what fits."""

from __future__ import annotations

import asyncio

import pytest
from textual.app import App, ComposeResult
from textual.reactive import reactive

from picoctl.tui.model import Link
from picoctl.tui.widgets.bars import TitleBar

NOON = 12 * 3600.0


class _Top(App[None]):
    link = reactive(Link("live"))

    def __init__(self, hub_url: str) -> None:
        super().__init__()
        self.hub_url = hub_url
        self.clock = lambda: NOON

    def compose(self) -> ComposeResult:
        yield TitleBar("releases")


def _top_line(width: int, hub_url: str = "http://127.0.0.1:8470") -> str:
    async def run() -> str:
        app = _Top(hub_url)
        async with app.run_test(size=(width, 5)) as pilot:
            await pilot.pause()
            return app.query_one(TitleBar).render().plain

    return asyncio.run(run())


@pytest.mark.parametrize(("width", "shown"), [
    (120, " picoctl  1 Fleet  2 Releases  3 History  4 Pi  5 USB   ● live  127.0.0.1:8470  12:00:00Z"),
    (80, " picoctl  1 Fleet  2 Releases  3 History  4 Pi  5 USB   ● live  127.0.0.1:8470"),
    (73, " picoctl  1 Fleet  2 Releases  3 History  4 Pi  5 USB   ● live  12:00:00Z"),
    (61, " picoctl  1 Fle  2 Rel  3 His  4 Pi  5 USB   ● live"),
])
def test_the_screens_names_are_cut_only_when_nothing_else_can_go(width: int, shown: str) -> None:
    assert _top_line(width) == shown


def test_a_hub_address_too_long_for_the_line_is_left_out_whole_not_cut() -> None:
    line = _top_line(80, "https://greenhouse-hub.example.org:8470")
    assert line.endswith("● live  12:00:00Z") and "greenhouse" not in line
