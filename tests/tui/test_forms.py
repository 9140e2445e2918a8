"""Forms and confirmations on the recorded demo session: keys that arrive in one burst land in order,
the provision form is checked, and its confirmation names the board it overwrites."""

from __future__ import annotations

import asyncio

from textual import events
from textual.widgets import Input, Select

from screenshots import settled
from waiting import until
from picoctl.tui.widgets.canary_form import CanaryForm
from picoctl.tui.widgets.modals import Confirm, Fields

KEYS = {"\t": ("tab", None), "\n": ("enter", None)}


def burst(app: object, text: str) -> None:
    """Every key of `text` queued at once, as a paste or a laggy link delivers them."""
    for ch in text:
        key, char = KEYS.get(ch, (ch, ch))
        app.post_message(events.Key(key, char))  # type: ignore[attr-defined]


def fields(app: object) -> dict[str, str]:
    return {i.id: i.value for i in app.screen.query(Input)}  # type: ignore[attr-defined]


def test_keys_in_one_burst_land_in_their_fields_in_order() -> None:
    async def run() -> None:
        async with settled(start_mode="usb") as (app, pilot):
            await pilot.press("j", "v")
            assert isinstance(app.screen, Fields)
            burst(app, "x1\ty2\tpass word")
            await pilot.pause(0.3)
            assert fields(app) == {"field-id": "x1", "field-ssid": "y2", "field-password": "pass word"}
            await pilot.press("shift+tab", "shift+tab")
            burst(app, "3\n4\n")  # enter moves on, field by field (a field's text is selected on entry: replaced)
            await pilot.pause(0.3)
            assert fields(app)["field-id"] == "3" and fields(app)["field-ssid"] == "4"

            await pilot.press("escape", "1", "2", "n")
            await pilot.pause(0.3)
            assert app.screen.__class__.__name__ == "CanaryForm"
            app.screen.query_one("#cohort-value", Input).focus()
            burst(app, "ab\tc")
            await pilot.pause(0.3)
            assert app.screen.query_one("#cohort-value", Input).value == "ab"
            assert app.screen.query_one("#stages", Input).value.endswith("c")

    asyncio.run(run())


def test_text_typed_with_the_key_that_opens_a_form_lands_in_its_first_field_or_nowhere() -> None:
    async def run() -> None:
        async with settled(start_mode="usb") as (app, pilot):
            await pilot.press("j")
            burst(app, "vgh-07\tshed\tlong enough")  # v opens the provision form: the rest is typed into it
            typed = {"field-id": "gh-07", "field-ssid": "shed", "field-password": "long enough"}
            await until(pilot, lambda: isinstance(app.screen, Fields) and fields(app) == typed, what=str(typed))
            await pilot.press("escape")
            app.push_screen(Fields("a form", [("id", "device id", "", False), ("ssid", "Wi-Fi SSID", "", False)]))
            burst(app, "gh-08\tshed")  # its first keys reach the form before its first field has focus
            await until(pilot, lambda: fields(app) == {"field-id": "gh-08", "field-ssid": "shed"}, what="gh-08, shed")
            await pilot.press("escape", "2")
            burst(app, "nq1ab")  # the rollout form's first field is a list: the text goes nowhere
            await until(pilot, lambda: isinstance(app.screen, CanaryForm), what="the rollout form")
            await pilot.pause(0.3)  # what the rest of the burst did, if anything
            assert isinstance(app.screen, CanaryForm) and app.return_code is None and app.current_mode == "releases"
            assert fields(app) == {"cohort-value": "", "stages": "canary,10%,50%,100%", "halt": "1", "promote": "0"}

    asyncio.run(run())


def test_enter_on_the_rollout_forms_release_list_starts_the_rollout_and_space_opens_the_list() -> None:
    async def run() -> None:
        async with settled(start_mode="releases") as (app, pilot):
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, CanaryForm), what="the rollout form")
            release = app.screen.query_one("#release", Select)
            assert app.screen.focused is release
            await pilot.press("enter")  # submitted: 1.1.0 has no smoke, so the form asks first
            await until(pilot, lambda: isinstance(app.screen, Confirm), what="the smoke question")
            assert not release.expanded
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, CanaryForm), what="back on the form")
            await pilot.press("space")
            await until(pilot, lambda: release.expanded, what="the list open")
            await pilot.press("up", "enter")  # enter in the open list picks a release, and the form stays
            await until(pilot, lambda: not release.expanded, what="the list closed")
            assert isinstance(app.screen, CanaryForm) and release.value == "picow/1.0.0"

    asyncio.run(run())


def test_provision_checks_its_form_and_names_the_board_it_overwrites() -> None:
    async def run() -> None:
        async with settled(start_mode="usb") as (app, pilot):
            await pilot.press("j", "v", *"gh-07", "enter", "enter", "enter")  # no SSID, no password
            await pilot.pause(0.2)
            assert isinstance(app.screen, Fields)
            assert "Wi-Fi SSID" in str(app.screen.query_one("#form-error").render())
            await pilot.press("shift+tab", *"shed", "enter", *"short", "enter")
            await pilot.pause(0.2)
            assert isinstance(app.screen, Fields) and "8 to 63" in str(app.screen.query_one("#form-error").render())
            app.screen.query_one("#field-password", Input).value = "long enough"
            await pilot.press("enter")
            await pilot.pause(0.5)
            assert isinstance(app.screen, Confirm)
            assert app.screen.title_text == "Overwrite bench-1 on ttyACM0 with gh-07?"
            assert "This board is bench-1 (pico 0.9.2)" in app.screen.body
            assert "picoctl devices remove bench-1" in app.screen.body
            await pilot.press("n")
            await pilot.pause(0.2)
            assert not isinstance(app.screen, Confirm) and app.screen.busy == ""

    asyncio.run(run())
