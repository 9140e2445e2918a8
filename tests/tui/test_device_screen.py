"""The Device screen on the recorded sessions: the why of a failed trial (firmware, boot, reset cause,
traceback) written cleanly at 80 columns, and charts of the device's own sensor with their scale, a
series without data said to be so, a constant one drawn half way up."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from screenshots import WHY, settle, settled
from picoctl.tui.model import Device
from picoctl.tui.screens.device import DeviceScreen, firmware
from picoctl.tui.widgets.fast_table import FastTable
from picoctl.tui.widgets.series import Series

ERROR = "AttributeError: module 'hardware' has no attribute 'pump_pwm' (app/main.py:8)"


def text(app: object, selector: str) -> str:
    return str(app.screen.query_one(selector).render())  # type: ignore[attr-defined]


def test_the_failed_canary_names_gh03_and_its_screen_tells_why_cleanly() -> None:
    async def run() -> None:
        async with settled(WHY, start_mode="releases") as (app, pilot):
            line = " ".join(text(app, "#rollout-info").split())
            assert f"(1/4) halted: gh-03 rolled_back: {ERROR} w: why" in line  # the state is said once
            await pilot.press("w")
            await settle(pilot)
            assert isinstance(app.screen, DeviceScreen) and app.screen.device_id == "gh-03"
            why = text(app, "#device-why").split("\n")
            assert why[:2] == ["MicroPython 1.29.0  .mpy 6.3  linux", "boot 5  reset cause soft"]
            assert why[2].startswith("last error AttributeError") and why[-1].startswith("AttributeError")
            assert '  File "app/main.py", line 8, in pump' in why
            assert all(len(row) <= 78 for row in why[:2])

    asyncio.run(run())


def test_a_usb_picos_temperature_is_charted_with_its_scale_and_an_empty_series_says_no_data() -> None:
    async def run() -> None:
        async with settled(start_mode="fleet") as (app, pilot):
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, DeviceScreen) and app.screen.device_id == "bench-1"
            assert (text(app, "#label-0"), text(app, "#range-0")) == ("temperature 26.5°C", "25°C to 26.5°C")
            assert app.screen.query_one("#spark-0", Series).data
            assert (text(app, "#label-1"), text(app, "#range-1")) == ("RSSI no data", "")
            assert app.screen.query_one("#spark-1", Series).styles.visibility == "hidden"  # not a line at zero
            assert (text(app, "#label-2"), text(app, "#range-2")) == ("free mem 166K", "166K to 172K")
            assert not app.screen.query_one("#device-why").display  # nothing reported: no blank line

    asyncio.run(run())


def test_firmware_says_what_the_board_reported_and_leaves_out_the_rest() -> None:
    board = Device("gh-01", "picow", boots=12, reset_cause="watchdog", firmware={
        "micropython": "1.24.1", "mpy_abi": "6.3", "board": "Raspberry Pi Pico W with RP2040", "uid": "e6614c311b4a"})
    assert firmware(board) == ("MicroPython 1.24.1  .mpy 6.3  Raspberry Pi Pico W with RP2040  id e6614c311b4a\n"
                               "boot 12  reset cause watchdog")
    assert firmware(Device("gh-02", "picow", firmware={"micropython": "1.29.0", "board": "linux [GCC 14.2.1] version",
                                                       "uid": ""})) == "MicroPython 1.29.0  linux"
    assert firmware(Device("bench-1", "pico")) == ""


def test_a_constant_series_is_a_level_line_at_mid_height_as_its_range_says() -> None:
    class Charts(App[None]):
        def compose(self) -> ComposeResult:
            yield Series([-61.0, -61.0, -61.0], id="constant")
            yield Series([7.0], id="one")
            yield Series([1.0, 2.0, 3.0], id="rising")
            yield Series([-61.0, -61.0], id="tall", classes="tall")

        CSS = "Series { width: 6; } .tall { height: 2; }"

    def drawn(app: App[None], selector: str) -> list[str]:
        widget = app.query_one(selector, Series)
        return [strip.text for strip in widget.render_lines(widget.region.reset_offset)]

    async def run() -> None:
        app = Charts()
        async with app.run_test(size=(20, 6)) as pilot:
            await pilot.pause()
            assert drawn(app, "#constant") == drawn(app, "#one") == ["▄" * 6]  # not ▁ (nor █ for one value)
            assert drawn(app, "#rising") == ["▁▁▄▄██"]  # a series that varies is Textual's own
            assert drawn(app, "#tall") == [" " * 6, "█" * 6]  # half way up two lines

    asyncio.run(run())


def test_a_transient_failure_reads_as_retrying_with_its_reason_in_the_fleet_and_on_its_screen() -> None:
    async def run() -> None:
        async with settled() as (app, pilot):
            async def fails() -> None:
                app.take("status", {"device_id": "gh-02", "rollout_id": 1, "version": "1.1.0", "seq": 9,
                                    "phase": "failed", "transient": True,
                                    "detail": "out of memory while staging data.bin (try 1 of 3, retrying)"})
                app.flush()
                await pilot.pause()

            await fails()
            table = app.screen.query_one("#devices", FastTable)
            row = "".join(seg.text for seg in table.render_line(table.keys_in_order().index("gh-02") + 1))
            assert "1.1.0 retrying" in row, row
            await pilot.press("j", "j", "j", "enter")
            await settle(pilot)
            assert isinstance(app.screen, DeviceScreen) and app.screen.device_id == "gh-02"
            await fails()  # after the screen loaded the device's recorded detail
            info = " ".join(text(app, "#device-info").split())
            assert "seq 9 phase failed, retrying out of memory while staging data.bin (try 1 of 3, retrying)" in info, info

    asyncio.run(run())
