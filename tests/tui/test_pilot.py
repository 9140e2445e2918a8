"""The TUI driven by its keys against a real hub on 127.0.0.1 (one per module), simulated Pico W boards
speaking the device protocol, the real Pi deploy layer with the example app, a virtual BOOTSEL drive
and a virtual USB Pico."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from textual.widgets import Input, Select

import conftest  # tests/conftest.py: the hub fixture's Hub
from loopback import Peer, serving
from waiting import until
from picoctl import config, release
from picoctl.client import AsyncHubClient
from picoctl.commands.init import init_site
from picoctl.sim import pi_app_control
from picoctl.sim.bootsel_drive import VirtualDrive
from picoctl.sim.fleet import DeviceProtocolError, SimDevice
from picoctl.tui.app import PicoctlApp
from picoctl.tui.screens.device import DeviceScreen
from picoctl.tui.source import Live
from picoctl.tui.widgets.modals import Confirm, Help, Prompt
from picoctl.tui.widgets.serial_view import SerialView
from picoctl.usb import uf2
from picoctl.sim.board import find_micropython
from picoctl.shipped import PICO_APP

REPO = Path(__file__).resolve().parents[2]
PI_APP = REPO / "examples" / "pi-app"
SIZE = (100, 30)
HAS_MICROPYTHON = find_micropython() is not None


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[conftest.Hub]:
    """One hub for the module; four Pico W (gh-01, gh-02 on the canary channel) and two releases."""
    h = conftest.Hub.create(tmp_path_factory.mktemp("tui") / "site")
    h.start()
    try:
        for v in ("1.0.0", "1.1.0"):
            h.publish(h.build_release(v, {"main.py": f"print('app {v}')\n".encode()}))
        h.sims = {}  # type: ignore[attr-defined]
        for i in range(1, 5):
            did = f"gh-{i:02d}"
            key = h.register(did, "picow", "canary" if i <= 2 else "stable")
            h.sims[did] = SimDevice(did, key, fail_trial=(did == "gh-01"))  # type: ignore[attr-defined]
        with httpx.Client(base_url=h.url, timeout=10) as c:
            for sim in h.sims.values():  # type: ignore[attr-defined]
                sim.heartbeat(c)
        yield h
    finally:
        h.close()


def app_for(hub: conftest.Hub, cfg: config.FleetConfig | None = None, live_ticks: bool = True) -> PicoctlApp:
    cfg = cfg or hub.cfg
    return PicoctlApp(cfg, Live(cfg, client=AsyncHubClient(hub.url, hub.token)), live_ticks=live_ticks)


def table(app: PicoctlApp, selector: str) -> Any:
    return app.screen.query_one(selector)


def text_of(app: PicoctlApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def cell(app: PicoctlApp, row: str, column: str) -> str:
    t = table(app, "#devices")
    return str(t.get_cell(row, column)) if t.has(row) else ""


async def step(hub: conftest.Hub, did: str) -> Any:
    """One agent cycle of a simulated board (heartbeat, check, update), off the event loop."""
    def run() -> Any:
        with httpx.Client(base_url=hub.url, timeout=10) as c:
            return hub.sims[did].step(c)  # type: ignore[attr-defined]
    return await asyncio.to_thread(run)


async def heartbeat(hub: conftest.Hub, did: str, **readings: Any) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        sim = hub.sims[did]  # type: ignore[attr-defined]
        sim.readings.update(readings)
        with httpx.Client(base_url=hub.url, timeout=10) as c:
            return sim.heartbeat(c)
    return await asyncio.to_thread(run)


def test_fleet_updates_live_filters_and_opens_a_device(hub: conftest.Hub) -> None:
    async def run() -> None:
        app = app_for(hub, live_ticks=False)  # no ages ticking: only what the heartbeat changed is written
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: table(app, "#devices").row_count == 4, what="four devices")
            assert "4 devices" in text_of(app, "#summary") and "● 4 online" in text_of(app, "#summary")
            before = table(app, "#devices").updates

            await heartbeat(hub, "gh-02", moisture=12.5, pump=True)
            await until(pilot, lambda: cell(app, "gh-02", "moisture") == "12.5", what="moisture over SSE")
            assert cell(app, "gh-02", "pump") == "on"
            assert table(app, "#devices").updates - before <= 6  # that row's changed cells, not a rebuild

            await pilot.press("slash", *"gh-04", "enter")
            await until(pilot, lambda: table(app, "#devices").row_count == 1, what="filtered to one row")
            await pilot.press("slash", *"nope", "enter")  # the box's text is selected: typing replaces it
            await until(pilot, lambda: "no device matches 'nope'" in text_of(app, "#fleet-empty"), what="no matches")
            await pilot.press("escape")  # from the table: the filter goes
            await until(pilot, lambda: table(app, "#devices").row_count == 4, what="filter cleared")
            assert not app.screen.query_one("#filter").display

            await pilot.press("g", "j", "j", "enter")  # the third row: gh-03
            await until(pilot, lambda: isinstance(app.screen, DeviceScreen))
            assert app.screen.device_id == "gh-03"
            await until(pilot, lambda: "gh-03" in text_of(app, "#device-info"))
            await until(pilot, lambda: table(app, "#device-history").row_count >= 1, what="device history")
            assert "trusts key set" not in text_of(app, "#device-info")  # gh-03 has not said yet
            hub.sims["gh-03"].keys = 2  # type: ignore[attr-defined]
            await heartbeat(hub, "gh-03")
            await until(pilot, lambda: "trusts key set v2" in text_of(app, "#device-info"), what="keys over SSE")

            await pilot.press("m")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert "Move gh-03 to canary?" in app.screen.title_text and "1 device" in app.screen.body
            await pilot.press("y")
            await until(pilot, lambda: next(d for d in hub.client.devices() if d["id"] == "gh-03")["channel"] == "canary",
                        what="hub has gh-03 on canary")
            await until(pilot, lambda: "channel canary" in text_of(app, "#device-info"))

            await pilot.press("c")
            await pilot.pause(0.5)
            assert (await heartbeat(hub, "gh-03"))["check_now"] is True

            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, DeviceScreen))
            await until(pilot, lambda: cell(app, "gh-03", "channel") == "canary")

            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, Help))
            lines = " ".join(str(s.render()) for s in app.screen.query(".help-line"))
            assert "the selected device's history and actions" in lines and "leave picoctl" in lines
            await pilot.press("escape")
        await app.source.client.aclose()

    asyncio.run(run())


def test_remove_a_device_after_confirmation(hub: conftest.Hub) -> None:
    key = hub.register("gh-99")

    async def run() -> None:
        app = app_for(hub)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: table(app, "#devices").has("gh-99"), what="gh-99 listed")
            app.open_device("gh-99")
            await until(pilot, lambda: isinstance(app.screen, DeviceScreen))
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert app.screen.title_text == "Remove gh-99 from the fleet?"
            assert "its key is refused from now on" in app.screen.body and "history stays" in app.screen.body
            await pilot.press("y")
            await until(pilot, lambda: not table(app, "#devices").has("gh-99"), what="gh-99 gone from the table")
        await app.source.client.aclose()

    asyncio.run(run())
    assert all(d["id"] != "gh-99" for d in hub.client.devices())
    assert hub.client.history(device="gh-99")[-1]["kind"] == "device_removed"
    with httpx.Client(base_url=hub.url, timeout=10) as c:
        with pytest.raises(DeviceProtocolError):
            SimDevice("gh-99", key).heartbeat(c)


def test_canary_start_halt_and_rollback(hub: conftest.Hub) -> None:
    async def run() -> None:
        app = app_for(hub)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model.releases, what="releases")
            await pilot.press("2", "n")
            await until(pilot, lambda: app.screen.__class__.__name__ == "CanaryForm")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, Confirm), what="the smoke offered first")
            assert app.screen.title_text == "Canary picow 1.1.0 without a passing smoke?"
            assert "has no smoke attestation and was not smoked here" in app.screen.body
            await pilot.press("y")  # the operator may still canary it
            started = await until(pilot, lambda: [r for r in hub.client.rollouts() if r["version"] == "1.1.0"],
                                  what="rollout on the hub")
            rid = started[0]["id"]
            assert [s["name"] for s in started[0]["stages"]] == ["canary", "10%", "50%", "100%"]
            await until(pilot, lambda: f"rollout #{rid}" in text_of(app, "#rollout-info"), what="rollout shown")

            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert app.screen.title_text == f"Promote rollout #{rid}?" and "Stage 10% opens" in app.screen.body
            await pilot.press("y")
            await until(pilot, lambda: "stage 10% (2/4)" in text_of(app, "#rollout-info"), what="promoted")

            assert await step(hub, "gh-02") == "committed"  # counts move without a rollout event: reloaded
            await until(pilot, lambda: "committed 1" in text_of(app, "#rollout-info"), what="counts reloaded")
            await until(pilot, lambda: str(table(app, "#releases").get_cell("picow/1.1.0", "devices")) == "1",
                        what="gh-02 counted on 1.1.0 once it reports it")

            assert await step(hub, "gh-01") == "rolled_back"  # its trial never confirms: the canary fails
            await until(pilot, lambda: "halted" in text_of(app, "#rollout-info"), what="halt seen over SSE")
            assert "failed 1" in text_of(app, "#rollout-info")
            await until(pilot, lambda: "failed: gh-01 rolled_back" in text_of(app, "#rollout-info"),
                        what="the failing device named")

            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert app.screen.title_text == f"Resume rollout #{rid}?"
            await pilot.press("y")
            await until(pilot, lambda: any(e["kind"] == "rollout_resumed" for e in hub.client.history()),
                        what="resumed on the hub")
            await pilot.press("h")  # the hub may halt it again at once (the failure still counts): halt is by hand
            if isinstance(app.screen, Confirm):
                await pilot.press("y")
            await until(pilot, lambda: "halted" in text_of(app, "#rollout-info"), what="halted again")

            await pilot.press("b")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert app.screen.title_text == f"Roll back rollout #{rid}?"
            assert app.screen.body == ("2 devices took picow 1.1.0 (gh-01, gh-02) and will be offered 1.0.0 again; "
                                       "gh-01 already restored itself, 1 device still to go back.")
            await pilot.press("y")
            back = await until(pilot, lambda: [r for r in hub.client.rollouts() if r.get("kind") == "rollback"],
                               what="rollback rollout on the hub")
            assert back[0]["stages"][0]["ids"] == ["gh-01", "gh-02"]  # the two that took 1.1.0, as the dialog said
            await until(pilot, lambda: table(app, "#rollouts").has(str(back[0]["id"])), what="rollback listed")

            await pilot.press("3")
            await until(pilot, lambda: any("rolled_back" in str(r) for r in _rows(app, "#events")), what="history")
            await pilot.press("slash", *"kind:rollout")
            await until(pilot, lambda: _rows(app, "#events") and all("rollout" in str(r[1]) for r in _rows(app, "#events")))
        await app.source.client.aclose()

    asyncio.run(run())


def test_rollout_form_previews_its_reach_refuses_unknown_ids_and_shows_a_refusal_in_place(hub: conftest.Hub) -> None:
    async def run() -> None:
        if not [r for r in hub.client.rollouts() if r["target"] == "picow" and r["state"] == "active"]:
            hub.client.start_rollout("picow", "1.1.0", [{"name": "canary", "channel": "canary"}], 0, 0)
        before = len(hub.client.rollouts())
        devices = hub.client.devices()  # the module's earlier tests move and remove some
        canary = sorted(d["id"] for d in devices if d["channel"] == "canary")
        app = app_for(hub, live_ticks=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model.releases and len(app.model.devices) == len(devices),
                        what="devices and releases")
            await pilot.press("2", "n")
            await until(pilot, lambda: app.screen.__class__.__name__ == "CanaryForm")
            form = app.screen
            units = [str(w.render()) for w in form.query(".unit")]
            assert units == ["failed devices (0: never halts)", "committed devices of a stage (0: by hand)"]
            note = lambda: str(form.query_one("#form-preview").render())  # noqa: E731
            await until(pilot, lambda: note().startswith(f"canary reaches {len(canary)} devices: {', '.join(canary)} "
                                                         "· then 10% +"), what="the canary channel's devices previewed")
            assert f"{len(devices)} of {len(devices)} picow devices in all" in note()

            form.query_one("#cohort", Select).value = "ids"
            form.query_one("#cohort-value", Input).focus()
            await pilot.press(*f"{canary[0]},gh-99")
            await until(pilot, lambda: note() == "✖ cohort: no device gh-99 on the hub", what="gh-99 named")
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            assert app.screen is form and len(hub.client.rollouts()) == before

            form.query_one("#cohort-value", Input).value = "gh-03"
            await until(pilot, lambda: note().startswith("canary reaches 1 device: gh-03 ·"), what="gh-03 previewed")
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, Confirm), what="the smoke question")
            await pilot.press("y")
            await until(pilot, lambda: "409" in note(), what="the hub's refusal in the form")
            assert note().startswith("✖ hub refused (HTTP 409): rollout ") and "is still active" in note()
            assert app.screen is form and len(hub.client.rollouts()) == before
            await pilot.press("escape")
            await until(pilot, lambda: app.screen is not form, what="the form closed by esc")
        await app.source.client.aclose()

    asyncio.run(run())


def _rows(app: PicoctlApp, selector: str) -> list[list[Any]]:
    t = table(app, selector)
    return [t.get_row(k) for k in t.keys_in_order()]


# --- the Pi ---------------------------------------------------------------------------------

@pytest.fixture
def pi_cfg(hub: conftest.Hub, tmp_path: Path) -> Iterator[config.FleetConfig]:
    cfg = config.load(hub.site / "fleet.toml")
    port = conftest.free_port()
    cfg.pi.root = str(tmp_path / "pi")
    pidfile = tmp_path / "app.pid"
    cfg.pi.restart_command = shlex.join(pi_app_control.command(cfg.pi.root, port, pidfile, tmp_path / "app.log"))
    cfg.pi.health_url = f"http://127.0.0.1:{port}/healthz"
    cfg.pi.health_timeout_s = 10.0
    cfg.pi.health_interval_s = 0.05
    os.environ["PICOCTL_HUB_URL"] = hub.url
    yield cfg
    os.environ.pop("PICOCTL_HUB_URL", None)
    try:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def test_pi_deploy_and_rollback(hub: conftest.Hub, pi_cfg: config.FleetConfig, tmp_path: Path) -> None:
    built = {}
    for v in ("2.0.0", "2.1.0"):
        built[v] = tmp_path / f"pi-{v}"
        release.build("pi", v, PI_APP, built[v], key_hex=hub.signing_key)

    async def deploy(pilot: Any, app: PicoctlApp, source: Path) -> None:
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, Prompt))
        app.screen.query_one("#prompt").value = str(source)
        await pilot.press("enter")
        await until(pilot, lambda: text_of(app, "#pi-step").startswith("deploy: done"), timeout=30, what="deploy done")

    async def run() -> None:
        app = app_for(hub, pi_cfg)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("4")
            await until(pilot, lambda: "current" in text_of(app, "#pi-info"))
            await deploy(pilot, app, built["2.0.0"])
            await deploy(pilot, app, built["2.1.0"])
            log = "\n".join(str(line) for line in app.screen.query_one("#pi-log").lines)
            assert "health" in log and "2.1.0" in log
            await until(pilot, lambda: "2.1.0" in text_of(app, "#pi-info") and "healthy" in text_of(app, "#pi-info"))
            assert app.screen.query_one("#pi-progress").percentage == 1

            await pilot.press("b")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert app.screen.title_text == "Roll the Pi back to 2.0.0?" and "from 2.1.0 to 2.0.0" in app.screen.body
            await pilot.press("y")
            await until(pilot, lambda: text_of(app, "#pi-step").startswith("rollback: done"), timeout=30, what="rollback done")
            await until(pilot, lambda: text_of(app, "#pi-info").startswith("current   2.0.0"))
            await pilot.press("3")
            await until(pilot, lambda: any(r[1] == "pi_rollback" for r in _rows(app, "#events")), what="pi_rollback event")
        await app.source.client.aclose()

    asyncio.run(run())


# --- USB -------------------------------------------------------------------------------------

@pytest.fixture
def usb_cfg(hub: conftest.Hub, tmp_path: Path) -> Iterator[config.FleetConfig]:
    cfg = config.load(hub.site / "fleet.toml")
    (tmp_path / "media").mkdir()
    (tmp_path / "ports").mkdir()
    cfg.usb.drive_roots = str(tmp_path / "media")
    cfg.usb.extra_ports = str(tmp_path / "ports" / "pico-*")
    cfg.usb.poll_s = 0.1
    os.environ["PICOCTL_HUB_URL"] = hub.url
    yield cfg
    os.environ.pop("PICOCTL_HUB_URL", None)


def test_usb_flash_bootsel_drive(hub: conftest.Hub, usb_cfg: config.FleetConfig, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "fw.uf2"
    image.write_bytes(uf2.build_uf2(os.urandom(20000), 0x10000000, "rp2040"))
    older = tmp_path / "build" / "old.uf2"
    older.parent.mkdir()
    older.write_bytes(b"")
    os.utime(older, (image.stat().st_mtime - 60,) * 2)
    monkeypatch.chdir(tmp_path)

    async def run() -> None:
        app = app_for(hub, usb_cfg)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            with VirtualDrive(tmp_path / "media" / "RPI-RP2") as drive:
                await until(pilot, lambda: table(app, "#boards").row_count == 1, what="BOOTSEL drive appears")
                shown = table(app, "#boards").get_row_at(0)[1]  # a long path keeps its end, the drive's name
                assert len(str(drive.path)) > 24 and shown == "…" + str(drive.path)[-23:]
                await pilot.press("f")
                await until(pilot, lambda: isinstance(app.screen, Prompt))
                assert app.screen.query_one("#prompt").value == "fw.uf2"  # the newest UF2 here is the default
                await pilot.press("enter")
                await until(pilot, lambda: "flashed" in text_of(app, "#usb-step"), timeout=20, what="flash done")
                assert drive.image == image.read_bytes()
                await until(pilot, lambda: table(app, "#boards").row_count == 0, what="drive gone after reboot")

            master, slave = os.openpty()  # any port, typed in when no board is selected
            try:
                await pilot.press("l")
                await until(pilot, lambda: isinstance(app.screen, Prompt))
                app.screen.query_one("#prompt").value = os.ttyname(slave)
                await pilot.press("enter")
                view = app.screen.query_one(SerialView)
                await until(pilot, lambda: view.port == os.ttyname(slave) and view.connected, what="port opened")
                os.write(master, b"hello from a plain port\r\n")
                await until(pilot, lambda: "hello from a plain port" in view.lines, what="line from the port")
            finally:
                app.screen.query_one(SerialView).stop()
                os.close(master)
                os.close(slave)
        await app.source.client.aclose()
        assert any(e["kind"] == "usb_flash" and e["result"] == "ok" for e in hub.client.history())

    asyncio.run(run())


@pytest.mark.micropython
@pytest.mark.skipif(not HAS_MICROPYTHON, reason="MicroPython unix port not installed")
def test_usb_serial_log_follow_pause_search_save(hub: conftest.Hub, usb_cfg: config.FleetConfig, tmp_path: Path) -> None:
    from picoctl.sim.virtual_pico import VirtualPico

    flash = conftest.pico_flash(tmp_path / "flash", "pico-tui-1")

    async def run() -> None:
        app = app_for(hub, usb_cfg)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            with VirtualPico(flash, serial="E66138935F1B2C3D", link_dir=tmp_path / "ports"):
                await until(pilot, lambda: table(app, "#boards").row_count == 1, what="virtual Pico appears")
                await pilot.press("l")
                view = app.screen.query_one(SerialView)
                await until(pilot, lambda: any('"heartbeat"' in x for x in view.lines), what="telemetry lines")
                await pilot.press("space")
                assert not view.following and "paused" in str(view.query_one("#serial-status").render())
                shown = len(view.query_one("#serial-log").lines)
                await until(pilot, lambda: len(view.lines) > shown + 3, what="lines buffered while paused")
                assert len(view.query_one("#serial-log").lines) == shown
                await pilot.press("space")
                assert view.following

                await pilot.press("slash")
                await until(pilot, lambda: isinstance(app.screen, Prompt))
                app.screen.query_one("#prompt").value = "pico-tui-1"
                await pilot.press("enter")
                await until(pilot, lambda: view.search == "pico-tui-1")
                log_lines = [str(x.text) for x in view.query_one("#serial-log").lines]
                assert log_lines and all("pico-tui-1" in x for x in log_lines)

                await pilot.press("w")
                await until(pilot, lambda: isinstance(app.screen, Prompt))
                out = tmp_path / "saved.log"
                app.screen.query_one("#prompt").value = str(out)
                await pilot.press("enter")
                await until(pilot, lambda: out.exists() and '"heartbeat"' in out.read_text(), what="saved log")

                before = len(view.lines)
                await pilot.press("x")
                assert len(view.lines) < before  # new lines keep coming; the old ones went
            await until(pilot, lambda: table(app, "#boards").row_count == 0, what="unplugged board gone")
        await app.source.client.aclose()

    asyncio.run(run())


@pytest.mark.micropython
@pytest.mark.skipif(not HAS_MICROPYTHON, reason="MicroPython unix port not installed")
def test_usb_push_release_and_provision_a_pico_w(hub: conftest.Hub, usb_cfg: config.FleetConfig,
                                                 tmp_path: Path) -> None:
    from picoctl.sim.virtual_pico import VirtualPico

    pico_release = hub.build_release("0.9.3", {"main.py": PICO_APP.read_bytes()}, target="pico")
    flash = conftest.pico_flash(tmp_path / "flash", "bench-9", 1, app=False)

    async def run() -> None:
        app = app_for(hub, usb_cfg)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            with VirtualPico(flash, serial="E66138935F1B2C3E", link_dir=tmp_path / "ports"):
                await until(pilot, lambda: table(app, "#boards").row_count == 1, what="virtual Pico appears")
                await pilot.press("l")  # its log is open: the push takes the port, the log has it back after
                view = app.screen.query_one(SerialView)

                await until(pilot, lambda: view.connected, what="the log following the board")
                await pilot.press("p")
                await until(pilot, lambda: isinstance(app.screen, Prompt))
                app.screen.query_one("#prompt").value = str(pico_release)
                await pilot.press("enter")
                await until(pilot, lambda: "pushed" in text_of(app, "#usb-step"), timeout=40, what="push done")
                assert "reports 0.9.3" in text_of(app, "#usb-step")
                assert app.screen.query_one("#usb-progress").percentage == 1
                await until(pilot, lambda: any('"version": "0.9.3"' in x for x in view.lines), what="the log after the push")

                await pilot.press("v")
                await until(pilot, lambda: app.screen.__class__.__name__ == "Fields")
                await pilot.press(*"gh-77", "enter", *"shed", "enter", *"secret-pw", "enter")
                await until(pilot, lambda: isinstance(app.screen, Confirm), timeout=20, what="the board read")
                assert app.screen.title_text == f"Overwrite bench-9 on {Path(os.listdir(tmp_path / 'ports')[0]).name} with gh-77?"
                assert "This board is bench-9 (pico 0.9.3)" in app.screen.body
                await pilot.press("y")
                await until(pilot, lambda: "provisioned gh-77" in text_of(app, "#usb-step"), timeout=60,
                            what="provision done")
        await app.source.client.aclose()
        config_json = json.loads((flash / "config.json").read_text())
        assert config_json["id"] == "gh-77" and len(config_json["key"]) == 64
        assert any(d["id"] == "gh-77" for d in hub.client.devices())
        kinds = {(e["kind"], e["result"]) for e in hub.client.history()}
        assert {("usb_push", "ok"), ("device_provisioned", "ok")} <= kinds
        from picoctl.history import local_actor

        push = next(e for e in hub.client.history() if e["kind"] == "usb_push")  # recorded as `usb push` records it
        assert (push["actor"], push["device_id"], push["version"]) == (local_actor(), "bench-9", "0.9.3")
        assert push["detail"].startswith(f"{pico_release} -> ") and "files" in push["detail"]

    asyncio.run(run())


# --- the link ----------------------------------------------------------------------------------

def test_hub_down_shows_banner_and_reconnects(hub: conftest.Hub) -> None:
    """Last in the module: it restarts the shared hub."""
    async def run() -> None:
        app = app_for(hub)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.link.state == "live")
            await asyncio.to_thread(hub.kill)
            await until(pilot, lambda: app.link.down, what="link down")
            banner = text_of(app, "#banner")
            assert hub.url in banner and "picoctl serve" in banner and app.screen.query_one("#banner").display
            await asyncio.to_thread(hub.start)
            await until(pilot, lambda: app.link.state == "live", timeout=15, what="reconnected")
            assert not app.screen.query_one("#banner").display
            await heartbeat(hub, "gh-04", moisture=77.7)
            await until(pilot, lambda: cell(app, "gh-04", "moisture") == "77.7", what="events after reconnect")
        await app.source.client.aclose()

    asyncio.run(run())


def test_unreachable_at_start_says_so(tmp_path: Path) -> None:
    site = tmp_path / "site"
    port = conftest.free_port()
    cfg = config.load(init_site(site, port))
    os.environ["PICOCTL_HUB_URL"] = f"http://127.0.0.1:{port}"

    async def run() -> None:
        app = PicoctlApp(cfg, Live(cfg))
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.link.down, what="down")
            banner = " ".join(text_of(app, "#banner").split())
            assert banner.startswith(f"✖ hub http://127.0.0.1:{port} unreachable: ") and "picoctl serve" in banner
            assert "not reachable at" not in banner and "this URL is" not in banner  # the banner says it its own way
            assert "hub down" in text_of(app, "#titlebar")
        await app.source.client.aclose()

    try:
        asyncio.run(run())
    finally:
        os.environ.pop("PICOCTL_HUB_URL", None)


class _OldHub(Peer):
    """A hub of another shape: its devices come as an object, not a list; every other list is empty."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.answer(200, b'{"devices": [{"id": "gh-01"}]}' if self.path == "/api/v1/devices" else b"[]")


def test_a_hub_answer_of_another_shape_is_said_in_the_banner(tmp_path: Path) -> None:
    async def run(url: str) -> None:
        cfg = config.load(init_site(tmp_path / "site", httpx.URL(url).port))
        app = PicoctlApp(cfg, Live(cfg, client=AsyncHubClient(url, "t")))
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.link.down, what="down")
            banner = " ".join(text_of(app, "#banner").split())
            assert banner.startswith("✖ hub answered GET /api/v1/devices with an unexpected shape: the answer: "
                                     "expected a list of objects, got an object; retrying."), banner
            assert "unreachable" not in banner and "picoctl serve" not in banner
            assert app.is_running and "hub down" in text_of(app, "#titlebar")
        await app.source.client.aclose()

    with serving(_OldHub) as url:
        asyncio.run(run(url))


def _select(app: PicoctlApp, selector: str, key: str) -> bool:
    t = table(app, selector)
    for row in range(t.row_count):
        t.move_cursor(row=row)
        if t.selected_key() == key:
            return True
    return False


def test_remove_a_release_after_confirmation_and_a_refusal_said_in_a_toast(hub: conftest.Hub) -> None:
    hub.publish(hub.build_release("0.9.0", {"main.py": b"print('app 0.9.0')\n"}))

    async def run() -> None:
        app = app_for(hub)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            await until(pilot, lambda: table(app, "#releases").has("picow/0.9.0"), what="0.9.0 listed")
            assert _select(app, "#releases", "picow/0.9.0")
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            assert app.screen.title_text == "Remove picow 0.9.0 from the hub?"
            assert "rollouts and history stay" in app.screen.body
            await pilot.press("y")
            await until(pilot, lambda: not table(app, "#releases").has("picow/0.9.0"), what="0.9.0 gone")
            assert _select(app, "#releases", "picow/1.0.0")  # boards of the module run it
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, Confirm))
            await pilot.press("y")
            await until(pilot, lambda: any("is in use, so it stays" in n.message for n in app._notifications),
                        what="the hub's refusal in a toast")
            assert table(app, "#releases").has("picow/1.0.0")
        await app.source.client.aclose()

    asyncio.run(run())
    assert "0.9.0" not in [r["version"] for r in hub.client.releases()]
    assert hub.client.history(kind="release_removed")[-1]["version"] == "0.9.0"
