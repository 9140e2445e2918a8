"""The wire contract: one device id rule everywhere, one liveness rule, and the board's mirror of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from picoctl import diagnostics, protocol, shipped
from picoctl.protocol import is_device_id, liveness


@pytest.mark.parametrize("good", ["gh-01", "pico-e6614103e7", "a", "A.b_c-9", "x" * 64])
def test_device_ids_accepted(good: str) -> None:
    assert is_device_id(good)


@pytest.mark.parametrize("bad", ["", ".", "..", "-rf", "_x", "gh:01", "gh/01", "gh 01", "x" * 65, "gh-²", "é", 7, None])
def test_device_ids_refused(bad: object) -> None:
    assert not is_device_id(bad)


def test_liveness_edges() -> None:
    assert liveness(None, 100.0, 30, 300) == "new"
    assert liveness(70.0, 100.0, 30, 300) == "online"  # exactly at the limit is still online
    assert liveness(69.0, 100.0, 30, 300) == "stale"
    assert liveness(-200.0, 100.0, 30, 300) == "stale"
    assert liveness(-201.0, 100.0, 30, 300) == "offline"


def _constants(path: Path) -> dict[str, object]:
    """The module-level `NAME = <literal>` assignments of a source file."""
    out: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def test_the_board_mirrors_the_contract() -> None:
    """The board's ota/protocol.py, and recover.py (boot.py's), which stays self-contained (it must run whatever state
    ota/ is in) and so carries its own copy of the queue length."""
    picow = shipped.DEVICE_CODE / "picow"
    board = _constants(picow / "ota" / "protocol.py")
    assert board["MAX_PENDING"] == protocol.MAX_PENDING_REPORTS
    assert _constants(picow / "recover.py")["MAX_PENDING"] == protocol.MAX_PENDING_REPORTS
    assert board["RESERVED_NAMES"] == protocol.PICOW_RESERVED_NAMES


def test_the_board_cuts_what_it_reports_to_the_hubs_limits() -> None:
    """A crash record and a log line the board sends fit the limits the hub holds them to
    (picoctl.diagnostics; over them the hub answers 413 and the report is lost)."""
    ota = shipped.DEVICE_CODE / "picow" / "ota"
    crash = _constants(ota / "crash.py")
    assert (crash["TYPE_MAX"], crash["MESSAGE_MAX"], crash["TRACEBACK_MAX"]) == (
        diagnostics.TYPE_MAX, diagnostics.MESSAGE_MAX, diagnostics.TRACEBACK_MAX)
    assert _constants(ota / "logring.py")["LINE_MAX"] <= diagnostics.LINE_MAX
