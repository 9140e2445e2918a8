"""The board's copy of the wire contract (ota/protocol.py) against the host's, and boot.py's own
copy of the pending-report queue length (boot.py imports nothing of ota/, so it repeats it)."""

from __future__ import annotations

import ast
from pathlib import Path

from picoctl import provision, release

OTA = provision.DEVICE_CODE / "ota"


def constants(path: Path) -> dict[str, object]:
    """The module-level `NAME = <literal>` assignments of a source file."""
    out: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def test_boot_py_queues_as_many_reports_as_the_agent() -> None:
    assert constants(provision.DEVICE_CODE / "boot.py")["MAX_PENDING"] == constants(OTA / "protocol.py")["MAX_PENDING"]


def test_board_refuses_the_names_release_build_refuses() -> None:
    assert constants(OTA / "protocol.py")["RESERVED_NAMES"] == release.PICOW_RESERVED
