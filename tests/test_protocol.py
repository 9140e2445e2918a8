"""The wire contract: one device id rule everywhere, one liveness rule, and the board's mirror of it."""

from __future__ import annotations

import re

import pytest

from picoctl import protocol, shipped
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


def test_the_board_queues_as_many_reports_as_the_contract_says() -> None:
    """boot.py stays self-contained (it must run whatever state ota/ is in), so it carries its own copy."""
    picow = shipped.DEVICE_CODE / "picow"
    agent = (picow / "ota" / "agent.py").read_text()
    boot = (picow / "boot.py").read_text()
    assert re.search(rf"^MAX_PENDING = {protocol.MAX_PENDING_REPORTS}\b", agent, re.M)
    assert f"[-{protocol.MAX_PENDING_REPORTS}:]" in boot
