"""The demo's story, told with its why: gh-03's traceback reaches `picoctl rollout status --json`, the
Releases screen names it and its error, and `w` opens its Device screen with the traceback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from picoctl import cli
from picoctl.demo import DRY, Demo
from picoctl.sim.board import find_micropython
from picoctl.tui.app import PicoctlApp
from picoctl.tui.screens.device import DeviceScreen
from picoctl.tui.screens.device_log import DeviceLogScreen
from picoctl.tui.source import Live
from waiting import until, wait_for

pytestmark = pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")
ERROR = "AttributeError: module 'hardware' has no attribute 'pump_pwm'"


def test_gh03s_traceback_reaches_rollout_status_and_the_tui(tmp_path) -> None:
    with Demo(devices=3, root=tmp_path / "run", log=lambda line: None) as demo:
        assert demo.hub is not None
        wait_for(lambda: {d["version"] for d in demo.hub.client.devices() if d["type"] == "picow"} == {"1.0.0"}
                 and len(demo.hub.client.devices()) >= 3, 30, "the boards on 1.0.0")
        assert cli.main(["--config", str(demo.config_path), "rollout", "start", "1.1.0", "--target", "picow"]) == 0
        wait_for(lambda: [r for r in demo.hub.client.rollouts() if r["state"] == "halted"], 90, "auto-halt")

        out = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(demo.config_path), "rollout", "status",
                              "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        failure = next(f for f in json.loads(out.stdout)["failures"] if f["device_id"] == DRY)
        assert failure["reason"] == f"rolled_back: {ERROR} (app/main.py:8)"  # the README's words
        assert "in pump" in failure["error"]["traceback"] and ERROR in failure["error"]["traceback"]
        text = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(demo.config_path), "rollout", "status"],
                              capture_output=True, text=True, timeout=60).stdout
        assert f"failed {DRY} rolled_back: {ERROR}" in " ".join(text.split())

        async def run() -> None:
            app = PicoctlApp(demo.cfg, Live(demo.cfg))
            async with app.run_test(size=(120, 40)) as pilot:
                def text_of(selector: str) -> str:
                    return str(app.screen.query_one(selector).render())

                await until(pilot, lambda: app.screen.query_one("#devices").row_count >= 3, 15, "the fleet")
                fleet = app.screen
                await until(pilot, lambda: DRY in app.model.devices and "!" in str(
                    fleet.cells(app.model.devices[DRY], app.model.clock())[0]), 15, "gh-03's row marked")
                await pilot.press("2")
                await until(pilot, lambda: f"halted: {DRY} rolled_back: {ERROR}" in text_of("#rollout-info"), 15, "the why line")
                await pilot.press("w")
                await until(pilot, lambda: isinstance(app.screen, DeviceScreen), 15, "the device screen")
                await until(pilot, lambda: ERROR in text_of("#device-why") and "in pump" in text_of("#device-why"), 15,
                            "the traceback")
                assert "reset cause" in text_of("#device-why") and ".mpy 6." in text_of("#device-why")
                await pilot.press("l")
                await until(pilot, lambda: isinstance(app.screen, DeviceLogScreen), 15, "the log viewer")
                await until(pilot, lambda: len(app.screen.query_one("#serial").lines) > 0, 30, "the board's log lines")
                assert any(" ago  " in line for line in app.screen.query_one("#serial").lines)
                await pilot.press("escape")
                await until(pilot, lambda: isinstance(app.screen, DeviceScreen), 15, "back on the device")
            await app.source.client.aclose()

        asyncio.run(run())
