"""One path for "do an operation and record it": the same event whichever face ran the operation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from picoctl import config, history, operations
from picoctl.commands.init import init_site
from picoctl.errors import BadInput, PicoctlError
from picoctl.progress import Progress
from picoctl.provision import Provisioned


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.FleetConfig:
    monkeypatch.setenv("PICOCTL_HUB_URL", "http://127.0.0.1:9")  # unreachable: events stay in the queue
    return config.load(init_site(tmp_path / "site"))


def queued(cfg: config.FleetConfig) -> list[dict]:
    path = history.queue_path(cfg)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_failed_push_and_a_provision_are_recorded_alike(cfg: config.FleetConfig, tmp_path: Path) -> None:
    src = tmp_path / "app"
    src.mkdir()
    (src / "main.py").write_text("print('hi')\n")
    gone = str(tmp_path / "pico-GONE")
    notes: list[str] = []
    with pytest.raises(PicoctlError, match="cannot open the serial port"):
        operations.push(cfg, src, gone, Progress("push"), on_queued=notes.append)
    done = operations.provision(cfg, "gh-5", "/dev/pico-X", lambda: Provisioned("gh-5", "1.0.0", {"boot.py": b""}))
    assert done.recorded is False and notes == [operations.QUEUED]
    failed, provisioned = queued(cfg)
    assert {failed["actor"], provisioned["actor"]} == {history.local_actor()}
    assert (failed["kind"], failed["result"]) == ("usb_push", "failed")
    assert failed["detail"].startswith(f"{src} -> {gone}: {gone}: cannot open the serial port")
    assert (provisioned["kind"], provisioned["device_id"], provisioned["version"], provisioned["result"]) == (
        "device_provisioned", "gh-5", "1.0.0", "ok")
    assert provisioned["detail"] == "gh-5 -> /dev/pico-X: 1 files, app 1.0.0"


def test_input_refused_before_the_board_is_touched_is_not_recorded(cfg: config.FleetConfig, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        operations.flash_uf2(cfg, tmp_path / "missing.uf2", tmp_path / "drive", Progress("flash"))
    with pytest.raises(BadInput, match="not a folder"):
        operations.push(cfg, tmp_path / "missing", "/dev/null", Progress("push"))
    assert queued(cfg) == []


def test_without_a_fleet_toml_nothing_is_recorded(tmp_path: Path) -> None:
    done = operations.provision(None, "gh-6", "out", lambda: Provisioned("gh-6", "1.0.0", {}))
    assert done.recorded is None and done.summary == "provisioned gh-6 (1.0.0, 0 files) to out"
