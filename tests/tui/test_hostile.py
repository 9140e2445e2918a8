"""The TUI against hostile data and a clumsy operator: what boards and the hub say is shown, never obeyed.

Every string of a recorded session (device fields, errors and tracebacks, firmware, readings and their
names, releases' notes, rollouts, history, the Pi, USB ports and serial numbers, serial log lines) is
given markup, terminal escapes, controls, bidi overrides, zero-width and combining characters, wide
characters and a lone surrogate; every screen is opened on it, then seeded random keys are pressed.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.app import App

import conftest  # tests/conftest.py: the hub fixture's Hub
from screenshots import WHY, settle, settled
from loopback import Peer, serving
from waiting import until
from picoctl import config
from picoctl.client import AsyncHubClient
from picoctl.site import init_site
from picoctl.sim.fleet import SimDevice
from picoctl.tui.app import PicoctlApp
from picoctl.tui.source import Live
from picoctl.tui.text import MAX_CHARS, cleaned, flat, visible

HOSTILE = ("[bold]B[/bold] [/] [link=http://x]L[/link] [@click=app.quit]Q[/] [unclosed "
           "\x1b[2J\x1b]52;c;aGk=\x07 \x1b]8;;http://e\x1b\\E\x1b]8;;\x1b\\ \x9b31m \u202eRTL \u200bzw "
           "e\u0301\u0301\u0301\u0301 漢字😀 \ud800 \x00\x08\r\n\tEND")
# What must never reach the terminal from data: the escapes the text holds, and the characters that
# move or hide what is around them. (The TUI's own output has none of these.)
FORBIDDEN = ("\x1b[2J", "\x1b]52", "\x1b]8;;http://e", "\x9b", "\x07", "\x08", "\x00", "\u202e", "\u200b", "\ud800")
LEAVE = ("kind", "status", "type", "phase", "state", "target", "result")  # words the TUI looks up


def hostile(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: hostile(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [hostile(v, key) for v in value]
    return value + HOSTILE if isinstance(value, str) and key not in LEAVE else value


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = hostile(json.loads(WHY.read_text()))
    for d in data["devices"]:
        d["readings"] = {**d.get("readings", {}), f"r{HOSTILE}": HOSTILE, "big": "x" * 100_000}
    for d in data["device_details"].values():
        d["last_error"] = {"type": "ValueError" + HOSTILE, "message": HOSTILE * 3, "traceback": HOSTILE * 50}
        d["boots"], d["firmware"] = 3, {"version": HOSTILE, "board": HOSTILE, "mpy": 6}
    port = "/dev/ttyACM0" + HOSTILE
    data["serial"] = {port: [json.dumps({"type": "heartbeat", "id": HOSTILE, "version": HOSTILE}), HOSTILE,
                             "y" * 100_000]}
    for b in data["usb"]:
        b["path"] = b["path"] + HOSTILE if b["kind"] == "bootsel" else port
    path = tmp_path_factory.mktemp("hostile") / "hostile.json"
    path.write_text(json.dumps(data))
    return path


def terminal(app: App[Any]) -> str:
    """What the app would write to the terminal for its whole screen now."""
    return app.screen._compositor.render_update(full=True).render_segments(app.console)


def obeyed(out: str) -> list[str]:
    return [repr(bad) for bad in FORBIDDEN if bad in out]


# Each screen of the session, from the fleet: the keys that open it.
SCREENS = [("fleet", []), ("device", ["enter"]), ("releases", ["2"]), ("why", ["2", "w"]),
           ("history", ["3"]), ("event", ["3", "enter"]), ("pi", ["4"]), ("usb", ["5", "j", "l"]),
           ("help", ["question_mark"]), ("palette", ["ctrl+p", *"bold"])]
COVERING = ("help", "palette")  # these cover the screen's data


@pytest.mark.parametrize("name,keys", SCREENS, ids=[s[0] for s in SCREENS])
def test_hostile_text_on_every_screen_is_shown_escaped_and_never_obeyed(recording: Path, name: str,
                                                                        keys: list[str]) -> None:
    async def run() -> None:
        async with settled(recording, size=(100, 30)) as (app, pilot):
            await pilot.press(*keys)
            await settle(pilot)
            out = terminal(app)
            assert app.is_running, f"{name}: the app ended"
            assert not obeyed(out), f"{name}: reached the terminal: {obeyed(out)}"
            if name not in COVERING:
                assert "[bold]B[/bold]" in out, f"{name}: the text is not shown as it is"
            app.notify(f"toast {HOSTILE}", title=HOSTILE)  # toasts quote the hub's refusals and boards' words
            await pilot.pause()
            toast = list(app._notifications)[-1]
            assert not toast.markup and not obeyed(toast.message + toast.title) and "\\x1b[2J" in toast.message
    asyncio.run(run())


def test_resizing_and_random_keys_on_hostile_data_crash_nothing_and_q_still_quits(recording: Path) -> None:
    """A few hundred seeded random keys over all screens, with terminal sizes changed under them."""
    keys = ["j", "k", "g", "G", "s", "S", "enter", "escape", "slash", "tab", "space", "w", "f", "l", "x", "n",
            "question_mark", "left_square_bracket", "right_square_bracket", "1", "2", "3", "4", "5",
            "backspace", "a", "[", "]", "ctrl+s", "down", "up", "pagedown", "end", "home",
            "v", "d", "b", "h", "r", "c", "m", "p", "y", "u", "0", "-", "%", "right", "left", "shift+tab"]
    sizes = [(80, 24), (60, 20), (40, 12), (250, 50), (100, 30)]

    async def run() -> None:
        rng = random.Random(4)
        async with settled(recording) as (app, pilot):
            for i in range(300):
                if i % 60 == 59:
                    await pilot.resize_terminal(*sizes[i // 60])
                await pilot.press(rng.choice(keys))
                assert app.is_running, f"after key {i}"
                if i % 10 == 9:
                    assert not obeyed(terminal(app)), f"after key {i}"
            for _ in range(6):  # out of any form or prompt, then quit
                await pilot.press("escape")
            await pilot.press("q")
            await pilot.pause()
            assert app.return_code == 0, "q did not quit"
    asyncio.run(run())


def test_visible_escapes_what_is_not_printable_keeps_what_is_and_says_what_it_cut() -> None:
    assert visible("gh-01 ok 漢字😀 é") == "gh-01 ok 漢字😀 é"
    assert visible("a\x1b[2Jb\u202ec\u200bd\ud800") == "a\\x1b[2Jb\\u202ec\\u200bd\\ud800"
    assert visible("line\r\nnext\tx", lines=True) == "line\nnext x"
    assert visible("line\nnext") == "line\\nnext"
    assert visible("e" + "\u0301" * 5) == "e\u0301\u0301" + "\\u0301" * 3
    assert visible("x" * (MAX_CHARS + 10)) == "x" * MAX_CHARS + "… (10 more characters)"
    assert flat("Traceback:\n  File x\n") == "Traceback:   File x"
    assert cleaned({"r\x1b": ["\x9b", 1, None]}) == {"r\\x1b": ["\\x9b", 1, None]}


def test_a_board_posting_hostile_text_to_the_real_hub_is_shown_escaped(hub: conftest.Hub) -> None:
    """Through the real hub: a board whose readings, their names and its crash record hold markup and
    escapes, heard by the list and by the event stream while its Device screen is open."""
    sim = SimDevice("gh-x1", hub.register("gh-x1", "picow", "stable"))
    said = HOSTILE.replace("\x00", "").replace("\ud800", "")  # the hub refuses these two itself (HTTP 400)
    sim.readings = {"t[bold]B[/bold]\x1b[2J": "[bold]B[/bold] [/]\x1b]52;c;aGk=\x07 \u202e\x9b31m", "moisture": 12.5}
    sim.last_error = {"type": "ValueError[bold]B[/bold]\x1b[2J", "message": said, "traceback": said * 6, "boot": 2,
                      "reset_cause": "soft"}
    with httpx.Client(base_url=hub.url, timeout=10) as c:
        sim.heartbeat(c)

    async def run() -> None:
        app = PicoctlApp(hub.cfg, Live(hub.cfg, client=AsyncHubClient(hub.url, hub.token)), live_ticks=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: "gh-x1" in terminal(app), what="the board in the fleet")
            await pilot.press("enter")
            await until(pilot, lambda: "ValueError[bold]B[/bold]\\x1b[2J" in terminal(app), what="the crash, escaped")
            sim.last_error = {**sim.last_error, "type": "KeyError[bold]B[/bold]\x1b]52;c;aGk=\x07"}
            with httpx.Client(base_url=hub.url, timeout=10) as c:
                await asyncio.to_thread(sim.heartbeat, c)
            await until(pilot, lambda: "KeyError[bold]B" in terminal(app), what="the crash over the stream")
            assert not obeyed(terminal(app)) and app.is_running
        await app.source.client.aclose()
    asyncio.run(run())


def test_a_stream_of_garbage_and_other_shapes_keeps_the_link_live_and_applies_what_it_can(tmp_path: Path) -> None:
    """Events the TUI cannot read are skipped: ending the stream on one would replay it forever."""
    data = json.loads(WHY.read_text())
    did = data["devices"][0]["id"]
    data["stream"] = [[1, "message", "garbage line, not JSON"], [2, "rollout", {"id": "x"}],
                      [3, "history", {"id": float("nan")}], [4, "heartbeat", {"device_id": did, "rssi": 1e400}],
                      [5, "heartbeat", [1, 2]], [6, "rollout", {"id": 1, "failures": 5}],
                      [7, "heartbeat", {"device_id": did, "at": data["clock"], "rssi": -42}]]
    path = tmp_path / "garbage.json"
    path.write_text(json.dumps(data).replace("Infinity", "1e400"))

    async def run() -> None:
        async with settled(path, size=(100, 30)) as (app, pilot):
            await until(pilot, lambda: app.model.devices[did].rssi == -42, what="the last, good event")
            assert app.link.state == "live" and app.last_event_id == 7 and app.model.skipped >= 5
    asyncio.run(run())


@pytest.mark.parametrize("screen", ["1", "3"])
def test_a_filter_typed_with_markup_is_searched_for_as_text(recording: Path, screen: str) -> None:
    async def run() -> None:
        async with settled(recording, size=(100, 30)) as (app, pilot):
            await pilot.press(screen, "slash", *"[/]", "enter")
            await settle(pilot)
            assert app.is_running and "[/]" in terminal(app)
    asyncio.run(run())


class _SilentHub(Peer):
    """Empty lists; its first event stream sends one event and then nothing, as a hung hub would; the next
    ones ping."""

    streams = 0
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != "/api/v1/events":
            self.answer(200, b"[]")
            return
        type(self).streams += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(b"id: 1\nevent: release\ndata: {}\n\n")
        self.wfile.flush()
        while not self.release.wait(0.2):
            if type(self).streams > 1:
                self.wfile.write(b": ping\n\n")
                self.wfile.flush()


def test_a_hub_that_goes_silent_is_said_once_and_the_stream_is_taken_again(tmp_path: Path) -> None:
    async def run(url: str) -> None:
        cfg = config.load(init_site(tmp_path / "site", httpx.URL(url).port))
        client = AsyncHubClient(url, "t")
        client.silent_s = 1.0
        app = PicoctlApp(cfg, Live(cfg, client=client), live_ticks=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.link.down, what="the silent stream taken as lost")
            assert "said nothing for 1 s (it pings every 15 s)" in app.link.why and app.is_running
            await until(pilot, lambda: app.link.state == "live" and _SilentHub.streams > 1, what="live again")
        await client.aclose()

    with serving(_SilentHub) as url:
        try:
            asyncio.run(run(url))
        finally:
            _SilentHub.release.set()
