"""The Pi screen on the recorded demo session: a pi release on the hub newer than the deployed one is
said to be waiting, and nothing is when the newest is deployed."""

from __future__ import annotations

import asyncio

from screenshots import demo_app, settle


def test_a_newer_pi_release_on_the_hub_is_shown_waiting() -> None:
    async def run() -> None:
        app = demo_app(start_mode="pi")
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            info = lambda: str(app.screen.query_one("#pi-info").render())  # noqa: E731
            assert "current   2.4.0" in info() and "waiting" not in info()  # 2.4.0 is the newest on the hub
            releases = [{"target": r.target, "version": r.version} for r in app.model.releases.values()]
            app.model.load_releases([*releases, {"target": "pi", "version": "2.10.0"}, {"target": "picow", "version": "9.0.0"}])
            app.flush()
            await pilot.pause()
            assert "waiting   pi 2.10.0 is published on the hub and not deployed: d deploys it" in info()

    asyncio.run(run())
