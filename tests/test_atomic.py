"""Whole-or-nothing writes: the old content survives a write that fails, and no temp file stays."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from picoctl import atomic


def test_write_replaces_whole(tmp_path: Path) -> None:
    p = tmp_path / "state.json"
    p.write_text("old")
    atomic.write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "state.json"
    p.write_text("old")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        atomic.write_bytes(p, b"new")
    assert p.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["state.json"]
