"""Shared fixtures: a real hub (`picoctl serve` as a subprocess on 127.0.0.1 and a free port)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from picoctl.sim.local_hub import LocalHub as Hub
from picoctl.sim.local_hub import free_port

__all__ = ["Hub", "free_port", "hub"]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub.create(tmp_path / "site")
    try:
        h.start()
        yield h
    finally:
        h.close()
