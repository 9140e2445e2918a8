"""Keyboard first: every binding has an id and a description, `?` lists them, the palette runs them."""

from __future__ import annotations

import asyncio
import json

from textual.binding import Binding

from picoctl.tui import keymap
from screenshots import settled
from picoctl.tui.widgets.modals import Confirm, EventDetail, Help


def all_bindings() -> list[Binding]:
    from picoctl.tui.screens import device, fleet, history, pi, releases, usb

    screens = [fleet.FleetScreen, device.DeviceScreen, releases.ReleasesScreen, history.HistoryScreen,
               pi.PiScreen, usb.UsbScreen]
    return [*keymap.APP, *keymap.TABLE, *keymap.MODAL, *(b for s in screens for b in s.BINDINGS)]


def test_every_binding_has_an_id_and_a_description() -> None:
    for b in all_bindings():
        assert b.id and b.description, b


def test_help_lists_the_screen_and_app_keys_and_the_palette_runs_actions() -> None:
    async def run() -> None:
        async with settled(start_mode="releases") as (app, pilot):
            await pilot.press("question_mark")
            assert isinstance(app.screen, Help)
            text = " ".join(str(w.render()) for w in app.screen.query(".help-line"))
            for b in [*keymap.RELEASES, *keymap.APP]:
                assert (b.tooltip or b.description) in text
            await pilot.press("escape")

            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert {"Canary", "Promote", "Halt", "Resume", "Roll back", "Show Fleet", "Show USB"} <= titles
            await pilot.press("ctrl+p", *"Halt")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert isinstance(app.screen, Confirm) and app.screen.title_text.startswith("Halt rollout #")
            await pilot.press("n")
            await pilot.press("3")
            assert app.current_mode == "history"
            await pilot.pause(0.3)
            events = app.screen.query_one("#events")  # shown for the first time, following: the newest in view
            assert events.max_scroll_y > 0 and events.scroll_y == events.max_scroll_y
            await pilot.press("enter")  # the newest event in full: the table cuts its detail at 80 columns
            await pilot.pause(0.2)
            assert isinstance(app.screen, EventDetail)
            newest = app.model.events[-1]
            facts = str(app.screen.query_one(".dialog-body").render())
            detail = str(app.screen.query_one("#event-detail").render())
            assert f"actor    {newest.actor}" in facts and newest.kind == "pi_deploy"
            assert '\n  "duration_s": ' in detail and json.loads(detail) == json.loads(newest.detail)
            await pilot.press("escape")
            assert app.current_mode == "history" and not isinstance(app.screen, EventDetail)
            await pilot.press("left_square_bracket")
            assert app.current_mode == "releases"

    asyncio.run(run())


def test_ctrl_c_quits_from_a_form_and_the_palette_reaches_other_screens_verbs() -> None:
    async def run() -> None:
        async with settled(start_mode="usb") as (app, pilot):
            await pilot.press("ctrl+p", *"Halt")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await pilot.pause(0.5)
            assert app.current_mode == "releases"
            assert isinstance(app.screen, Confirm) and app.screen.title_text.startswith("Halt rollout #")
            # the canary stage's two waiting devices, and the seven that later stages would have reached
            assert ("2 devices of this stage not yet on it stop getting it; 7 more devices in the next stages will "
                    "not get it either") in app.screen.body
            await pilot.press("n", "n")
            await pilot.pause(0.2)
            assert app.screen.__class__.__name__ == "CanaryForm"
            app.screen.query_one("#stages").focus()
            await pilot.pause()
            await pilot.press("ctrl+c")  # the focused input would take it as copy
            await pilot.pause(0.2)
        assert app.return_code == 0 and app._exit

    asyncio.run(run())
