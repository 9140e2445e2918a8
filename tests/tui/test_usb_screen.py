"""The USB screen's serial log on the recorded demo session: its state leads the status line (80 columns),
space reads Pause or Follow as it does, and `l` again on the followed port keeps what was read."""

from __future__ import annotations

import asyncio
from pathlib import Path

from screenshots import demo_app, settle, settled
from waiting import until
from picoctl.tui.widgets.modals import Prompt
from picoctl.tui.widgets.serial_view import SerialView


def test_serial_log_state_is_on_screen_and_l_again_keeps_the_lines() -> None:
    async def run() -> None:
        async with settled(start_mode="usb") as (app, pilot):
            await pilot.press("l")
            await pilot.pause(0.3)
            view = app.screen.query_one(SerialView)
            status = lambda: str(view.query_one("#serial-status").render())  # noqa: E731
            assert status().startswith("▶ following") and "10 lines" in status()
            assert app.screen.active_bindings["space"].binding.description == "Pause"
            await pilot.press("space")
            assert status().startswith("⏸ paused")
            assert app.screen.active_bindings["space"].binding.description == "Follow"
            view.lines.append("read while paused")
            await pilot.press("l")  # the same port again: nothing is wiped
            await pilot.pause(0.2)
            assert "read while paused" in view.lines and len(view.lines) == 11

    asyncio.run(run())


def test_w_saves_the_log_where_the_operator_started_not_in_the_working_folder(tmp_path: Path) -> None:
    async def run() -> None:
        app = demo_app(start_mode="usb")
        app.saves = tmp_path / "home"  # the demo runs in its own folder, removed when it ends
        app.saves.mkdir()
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("l")
            await pilot.pause(0.3)
            port = app.screen.query_one(SerialView).port
            await pilot.press("w")
            await pilot.pause(0.2)
            assert isinstance(app.screen, Prompt)
            target = app.saves / f"serial-{Path(port).name}.log"
            assert app.screen.query_one("#prompt").value == str(target)
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert len(target.read_text().splitlines()) == 10

    asyncio.run(run())


def test_the_usb_table_names_the_fleet_device_on_a_port_from_what_is_known_without_asking_it() -> None:
    def device_cells(app: object) -> dict[str, str]:
        table = app.screen.query_one("#boards")  # type: ignore[attr-defined]
        return {b.path: str(table.get_cell(key, "device")) for key, b in app.screen.boards.items()}  # type: ignore[attr-defined]

    async def run() -> None:
        async with settled(start_mode="usb") as (app, pilot):
            assert device_cells(app) == {"/media/pi/RPI-RP2": "-", "/dev/ttyACM0": "-"}  # nothing read from it yet
            await pilot.press("down", "l")  # its console: the telemetry names bench-1
            named = {"/media/pi/RPI-RP2": "-", "/dev/ttyACM0": "bench-1"}
            await until(pilot, lambda: device_cells(app) == named, what=str(named))

        async with settled(start_mode="fleet") as (app, pilot):
            app.model.devices["gh-05"].firmware["uid"] = "e6614c311b4a6d2c"  # its heartbeats' machine.unique_id()
            await pilot.press("5")
            await settle(pilot)
            assert device_cells(app) == {"/media/pi/RPI-RP2": "-", "/dev/ttyACM0": "gh-05"}  # the port's serial number

    asyncio.run(run())
