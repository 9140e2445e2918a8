"""The fleet table on the recorded demo session: the selection follows its device, the sort is shown, the
ID column stays when the table scrolls sideways, Home goes back to the start."""

from __future__ import annotations

import asyncio

from screenshots import settled
from picoctl.tui.screens.device import DeviceScreen
from picoctl.tui.widgets.fast_table import FastTable


def header(table: FastTable) -> str:
    return "".join(seg.text for seg in table.render_line(0))


def test_the_selection_follows_its_device_through_sorting_and_live_updates() -> None:
    async def run() -> None:
        async with settled() as (app, pilot):
            table = app.screen.query_one("#devices", FastTable)
            await pilot.press("j", "j", "j")
            assert table.selected_key() == "gh-02"
            assert header(table).startswith(" ID▲ ")
            await pilot.press("s", "s", "s", "s")  # sorted by seen
            assert table.sorted_by == ("seen", False) and " SEEN▲ " in header(table)
            assert table.selected_key() == "gh-02" and table.keys_in_order()[-1] in ("gh-02", "gh-08")
            await pilot.press("S")
            assert " SEEN▼ " in header(table) and table.selected_key() == "gh-02"
            # gh-02 reports again: it moves to the other end of the "seen" order, the cursor with it
            app.take("heartbeat", {"device_id": "gh-02", "at": app.clock(), "version": "1.0.0"})
            app.flush()
            await pilot.pause()
            assert table.keys_in_order()[-1] == "gh-02" and table.selected_key() == "gh-02"
            await pilot.press("enter")
            assert isinstance(app.screen, DeviceScreen) and app.screen.device_id == "gh-02"

    asyncio.run(run())


def test_the_id_column_stays_when_scrolled_right_and_home_goes_back() -> None:
    async def run() -> None:
        async with settled() as (app, pilot):
            table = app.screen.query_one("#devices", FastTable)
            row = "".join(seg.text for seg in table.render_line(1))
            assert row.split()[:4] == ["bench-1", "●", "online", "0.9.2"]  # id, state, version at 80 columns
            await pilot.press("j", "right", "right", "right")
            await pilot.pause()
            assert table.scroll_x > 0
            row = "".join(seg.text for seg in table.render_line(2))
            assert row.startswith(" bench-2 ") and "online" not in row  # pinned id, the state scrolled off
            await pilot.press("home")
            await pilot.pause()
            assert table.scroll_x == 0 and table.selected_key() == "bench-1"

    asyncio.run(run())


def test_both_tables_say_a_row_was_chosen_with_the_same_message() -> None:
    from textual import on
    from textual.app import App, ComposeResult

    from picoctl.tui.widgets.table import KeyedTable, RowChosen

    class Two(App[None]):
        chosen: list[tuple[str, str]] = []

        def compose(self) -> ComposeResult:
            yield FastTable([("id", "ID", 6)], id="fast")
            yield KeyedTable([("id", "ID", 6)], id="keyed")

        def on_mount(self) -> None:
            for t in (self.query_one("#fast", FastTable), self.query_one("#keyed", KeyedTable)):
                t.put("a", ("a",))
                t.put("b", ("b",))

        @on(RowChosen)
        def _chosen(self, event: RowChosen) -> None:
            self.chosen.append((event.control.id or "", event.key))

    async def run() -> None:
        app = Two()
        async with app.run_test(size=(40, 12)) as pilot:
            await pilot.pause()
            app.query_one("#fast").focus()
            await pilot.press("j", "enter")
            app.query_one("#keyed").focus()
            await pilot.press("enter")
            await pilot.pause()
        assert app.chosen == [("fast", "b"), ("keyed", "a")]

    asyncio.run(run())


def test_wide_characters_and_line_breaks_keep_the_columns_in_line() -> None:
    """A version of CJK or emoji takes two cells a character, a line break none of its own: the columns
    after them start where the header's do."""
    async def run() -> None:
        async with settled(size=(120, 24)) as (app, pilot):
            table = app.screen.query_one("#devices", FastTable)
            app.take("heartbeat", {"device_id": "gh-02", "at": app.clock(), "version": "漢字😀漢字😀漢字😀漢字"})
            app.take("heartbeat", {"device_id": "gh-03", "at": app.clock(), "version": "1.0\n.0\r\x1b"})
            app.flush()
            await pilot.pause()
            lines = {key: table.render_line(1 + table.keys_in_order().index(key)) for key in ("gh-01", "gh-02", "gh-03")}
            assert len({line.cell_length for line in lines.values()}) == 1
            starts = {key: [i for i, seg in enumerate(line) if seg.text.strip()][-1] for key, line in lines.items()}
            texts = {key: "".join(s.text for s in line) for key, line in lines.items()}
            assert "\n" not in texts["gh-03"] and "\x1b" not in texts["gh-03"]
            width = {key: sum(s.cell_length for s in list(line)[:starts[key]]) for key, line in lines.items()}
            assert len(set(width.values())) == 1, width  # the last column starts at the same cell

    asyncio.run(run())
