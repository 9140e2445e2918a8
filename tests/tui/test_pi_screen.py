"""The Pi screen on the recorded demo session: a pi release on the hub newer than the deployed one is
said to be waiting, and nothing is when the newest is deployed; the deploy prompt offers the Pi
releases near and completes their names and versions."""

from __future__ import annotations

import asyncio
import json

from textual.widgets import Input

from screenshots import settled
from waiting import until


def test_a_newer_pi_release_on_the_hub_is_shown_waiting() -> None:
    async def run() -> None:
        async with settled(start_mode="pi") as (app, pilot):
            info = lambda: str(app.screen.query_one("#pi-info").render())  # noqa: E731
            assert "current   2.4.0" in info() and "waiting" not in info()  # 2.4.0 is the newest on the hub
            releases = [{"target": r.target, "version": r.version} for r in app.model.releases.values()]
            app.model.load_releases([*releases, {"target": "pi", "version": "2.10.0"}, {"target": "picow", "version": "9.0.0"}])
            app.flush()
            await pilot.pause()
            assert "waiting   pi 2.10.0 is published on the hub and not deployed: d deploys it" in info()

    asyncio.run(run())


def test_the_deploy_prompt_offers_the_newest_pi_release_near_and_completes_names_and_versions(tmp_path, monkeypatch) -> None:
    for version in ("2.3.0", "2.10.0", "2.4.0"):
        folder = tmp_path / "releases" / f"pi-{version}"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps({"target": "pi", "version": version}))
    (tmp_path / "releases" / "picow-9.0.0").mkdir()
    (tmp_path / "releases" / "picow-9.0.0" / "meta.json").write_text(json.dumps({"target": "picow", "version": "9.0.0"}))
    monkeypatch.chdir(tmp_path)

    async def completed(pilot: object, field: Input, typed: str) -> str:
        """What → makes of `typed` once the completion is ready."""
        field.value = ""
        await pilot.press(*typed)  # type: ignore[attr-defined]
        return await until(pilot, lambda: field.value if field.value != typed else "", what=f"a completion of {typed}",
                           poll=lambda: pilot.press("right"))  # type: ignore[attr-defined]

    async def run() -> None:
        async with settled(start_mode="pi") as (app, pilot):
            await pilot.press("d")
            await until(pilot, lambda: app.screen.query("#prompt"), what="the deploy prompt")
            field = app.screen.query_one("#prompt", Input)
            assert field.value in ("releases/pi-2.10.0", "releases/pi-2.4.0", "releases/pi-2.3.0")  # the newest by time
            assert await completed(pilot, field, "rel") == "releases/pi-2.10.0"  # the highest version, not the first name
            assert await completed(pilot, field, "releases/pi-2.4") == "releases/pi-2.4.0"
            assert await completed(pilot, field, "releases/pic") == "releases/picow-9.0.0/"  # not pi: the path completes

    asyncio.run(run())
