"""Every call of the operator's CLI and TUI to the hub is bounded in all (picoctl.client): real local
hubs that drip their headers, drip their body, accept and never answer, or answer more than any
answer may hold. Each CLI command family, run as a user types it, ends within its bound with one line
naming the hub and what took too long; the TUI says it in its banner and keeps running. The bounds
are made short in fleet.toml ([hub] answer_timeout_s, [fetch]), so each case takes seconds."""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopback import Peer, serving, site_for
from waiting import until
from picoctl import config, release
from picoctl.client import HubClient
from picoctl.errors import PicoctlError
from picoctl.fetch_bounds import MAX_ANSWER_BYTES, allowed_s, release_fetch_s
from picoctl.tui.app import PicoctlApp
from picoctl.tui.source import Live

ANSWER_S = 1.0
RULE = config.FetchConfig(floor_s=1.0, min_rate=1 << 30)  # an upload of a small release: 1.0 s
SLOW = ("drip-headers", "drip-body", "silent")
_stop = threading.Event()  # set when the module is done: every hostile answer still going ends


class Hostile(Peer):
    """A hub answering every request (its body read first) as `mode` says; "ok": an empty list."""

    mode = "ok"

    def _any(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            getattr(self, "_" + self.mode.replace("-", "_"))()
        except OSError:  # the client hung up
            return

    do_GET = do_PUT = do_POST = do_DELETE = _any  # noqa: N815 (http.server's naming)

    def _ok(self) -> None:
        self.answer(200, b"[]")

    def _stream_drips_headers(self) -> None:
        if self.path.startswith("/api/v1/events"):
            self._drip_headers()
        else:
            self._ok()

    def _drip(self, head: bytes) -> None:
        self.wfile.write(head)
        while not _stop.wait(0.1):
            self.wfile.write(b" ")
            self.wfile.flush()

    def _drip_headers(self) -> None:
        self._drip(b"HTTP/1.1 200 OK\r\nX-Drip: ")

    def _drip_body(self) -> None:
        self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n[")

    def _silent(self) -> None:
        while not _stop.is_set() and not select.select([self.connection], [], [], 0.1)[0]:  # until the client hangs up
            pass

    def _hangup(self) -> None:
        pass  # the connection closed with no answer

    def _late(self) -> None:
        time.sleep(RULE.floor_s + 0.5)  # silent past [fetch] floor_s, inside an import's bound
        self.answer(200, b'{"meta": {"target": "picow", "version": "1.0.0", "sha256": "%s"}, "added": true}' % (b"ab" * 32))

    def _huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(64 * MAX_ANSWER_BYTES))
        self.end_headers()
        for _ in range(64):
            self.wfile.write(b" " * MAX_ANSWER_BYTES)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The hostile hub, a site whose fleet.toml points at it with short bounds, and a built release."""
    tmp = tmp_path_factory.mktemp("client-bounds")
    with serving(Hostile) as url:
        path, folder = site_for(url, tmp, answer_timeout_s=ANSWER_S)
        cfg = config.load(path)
        cfg.fetch = RULE
        config.save(cfg, path)
        try:
            yield {"url": url, "cfg": config.load(path), "release": folder}
        finally:
            _stop.set()


@pytest.fixture
def hostile(world: dict, request: pytest.FixtureRequest) -> Iterator[dict]:
    Hostile.mode = request.param
    yield world
    Hostile.mode = "ok"


def _picoctl(world: dict, *args: str, limit_s: float) -> tuple[str, float]:
    """`picoctl ARGS` as a user runs it: it fails (exit 1) with one line on stderr, within `limit_s` and
    the CLI's own start-up; that line and the time taken."""
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(world["cfg"].path), *args],
                         capture_output=True, text=True, timeout=limit_s + 20)
    took = time.monotonic() - t0
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and "Traceback" not in run.stderr, (run.returncode, run.stderr)
    assert took < limit_s + 6, (took, lines[0])  # start-up on a busy machine: a few seconds at most
    return lines[0], took


ANSWERS = {"devices": ("GET", "/api/v1/devices"), "history": ("GET", "/api/v1/history"),
           "rollout status": ("GET", "/api/v1/rollouts")}


@pytest.mark.parametrize("hostile", SLOW, indirect=True)
@pytest.mark.parametrize("command", list(ANSWERS))
def test_a_command_gives_up_on_a_slow_hub_within_its_answer_bound(hostile: dict, command: str) -> None:
    method, path = ANSWERS[command]
    line, _ = _picoctl(hostile, *command.split(), limit_s=ANSWER_S)
    assert line == (f"picoctl: error: hub {hostile['url']}: {method} {path}: not received within {ANSWER_S:.1f} s "
                    f"(hub.answer_timeout_s)"), line


def _changes(world: dict) -> dict[str, tuple[list[str], str, float, str, str]]:
    """Commands that may change something on the hub: (args, the call, its bound, where the bound comes
    from, the command that shows whether it was done)."""
    folder = world["release"]
    size = (folder / release.load_meta(folder)["artifact"]).stat().st_size
    return {
        "release publish": (["release", "publish", str(folder)], "PUT /api/v1/releases/picow/1.0.0",
                            allowed_s(RULE, size), "([fetch] floor_s plus the size at min_rate)", "picoctl release list"),
        "release import": (["release", "import", "https://ci.example/meta.json"], "POST /api/v1/releases/import",
                           release_fetch_s(RULE), "([fetch]: the meta.json at its cap and the largest artifact)",
                           "picoctl release list"),
        "rollout start": (["rollout", "start", "1.0.0"], "POST /api/v1/rollouts", ANSWER_S, "(hub.answer_timeout_s)",
                          "picoctl rollout status --target picow")}


@pytest.mark.parametrize(("hostile", "command"), [*((mode, "release publish") for mode in SLOW),
                                                  ("drip-body", "release import"), ("drip-body", "rollout start")],
                         indirect=["hostile"])
def test_a_change_gives_up_on_a_slow_hub_by_its_bound_and_says_how_to_check(hostile: dict, command: str) -> None:
    """An upload by the fetch rule at its size, an import by what the rule lets the hub's fetch take,
    another change by the answer bound; each says the hub may have done it, and how to see."""
    args, call, limit, why, check = _changes(hostile)[command]
    line, _ = _picoctl(hostile, *args, limit_s=limit)
    assert line == (f"picoctl: error: hub {hostile['url']}: {call}: not received within {limit:.1f} s {why}; "
                    f"the hub may or may not have done it: `{check}` shows whether it did"), line


@pytest.mark.parametrize("hostile", ["hangup"], indirect=True)
def test_a_change_whose_connection_the_hub_drops_says_the_hub_may_have_done_it(hostile: dict) -> None:
    line, _ = _picoctl(hostile, "release", "publish", str(hostile["release"]), limit_s=ANSWER_S)
    assert line == (f"picoctl: error: hub {hostile['url']}: PUT /api/v1/releases/picow/1.0.0 was cut off (Server "
                    "disconnected without sending a response.); the hub may or may not have done it: `picoctl release "
                    "list` shows whether it did"), line
    line, _ = _picoctl(hostile, "devices", limit_s=ANSWER_S)  # a question only: the hub did nothing
    assert line.startswith(f"picoctl: error: hub not reachable at {hostile['url']}: Server disconnected"), line


@pytest.mark.parametrize("hostile", ["late"], indirect=True)
def test_an_import_the_hub_is_silent_on_for_longer_than_floor_s_is_waited_for(hostile: dict) -> None:
    """The hub says nothing while it fetches a release: an import is bounded by what its fetch may take."""
    with HubClient.from_config(hostile["cfg"]) as client:
        assert client.import_release("https://ci.example/meta.json")["added"] is True


@pytest.mark.parametrize("hostile", ["huge"], indirect=True)
@pytest.mark.parametrize("command", [*ANSWERS, "release publish"])
def test_a_command_refuses_a_huge_answer_naming_the_hub(hostile: dict, command: str) -> None:
    method, path = ANSWERS.get(command, ("PUT", "/api/v1/releases/picow/1.0.0"))
    args = [str(hostile["release"])] if command == "release publish" else []
    line, _ = _picoctl(hostile, *command.split(), *args, limit_s=ANSWER_S)
    assert line == f"picoctl: error: hub {hostile['url']}: {method} {path}: the answer is over {MAX_ANSWER_BYTES} bytes", line


@pytest.mark.parametrize("hostile", ["drip-body", "huge"], indirect=True)
def test_a_download_is_bounded_by_the_fetch_rule_at_its_size_and_leaves_no_file(hostile: dict, tmp_path: Path) -> None:
    size, dest = 1000, tmp_path / "app.tar"
    t0 = time.monotonic()
    with HubClient.from_config(hostile["cfg"]) as client, pytest.raises(PicoctlError) as caught:
        client.download_artifact("ab" * 32, dest, size)
    said = f"hub {hostile['url']}: GET /artifacts/{'ab' * 32}: "
    limit = allowed_s(RULE, size)
    expected = f"not received within {limit:.1f} s" if Hostile.mode == "drip-body" else f"the answer is over {size} bytes"
    assert str(caught.value).startswith(said + expected), caught.value
    assert time.monotonic() - t0 < limit + 2 and not dest.exists()


@pytest.mark.parametrize("hostile", ["drip-headers", "drip-body"], indirect=True)
def test_the_tuis_refresh_against_a_dripping_hub_shows_the_banner_within_the_bound(hostile: dict) -> None:
    async def run() -> None:
        app = PicoctlApp(hostile["cfg"], Live(hostile["cfg"]), live_ticks=False)
        async with app.run_test(size=(100, 30)) as pilot:
            t0 = time.monotonic()
            await until(pilot, lambda: app.link.down, timeout=ANSWER_S + 4, what="the banner")
            assert time.monotonic() - t0 < ANSWER_S + 2
            banner = " ".join(str(app.screen.query_one("#banner").render()).split())
            assert banner.startswith(f"✖ hub {hostile['url']}: GET /api/v1/") and app.is_running, banner
            assert f"not received within {ANSWER_S:.1f} s (hub.answer_timeout_s); retrying." in banner, banner
            assert "overloaded or hung" in banner and "unreachable" not in banner and "picoctl serve" not in banner
        await app.source.client.aclose()
    asyncio.run(run())


@pytest.mark.parametrize("hostile", ["stream-drips-headers"], indirect=True)
def test_the_tui_gives_up_on_an_event_stream_whose_headers_drip_within_the_answer_bound(hostile: dict) -> None:
    """The lists come; the event stream's headers do not: not "live" for ever while no event can come."""
    async def run() -> None:
        app = PicoctlApp(hostile["cfg"], Live(hostile["cfg"]), live_ticks=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.link.down, timeout=ANSWER_S + 4, what="the banner")
            assert app.link.why == (f"hub {hostile['url']}: GET /api/v1/events: not received within {ANSWER_S:.1f} s "
                                    "(hub.answer_timeout_s)"), app.link.why
        await app.source.client.aclose()
    asyncio.run(run())


def test_the_sync_client_answers_inside_a_running_event_loop_and_on_threads(world: dict) -> None:
    """HubClient runs its calls on a loop of its own: code already in an event loop (a TUI worker, an
    async test) or on several threads at once may call it."""
    with HubClient.from_config(world["cfg"]) as client:
        async def inside() -> object:
            return client.devices()
        assert asyncio.run(inside()) == []
        got: list[object] = []
        threads = [threading.Thread(target=lambda: got.append(client.releases())) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert got == [[]] * 4
