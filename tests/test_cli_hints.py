"""The CLI says what to do next: where the hub URL comes from when the hub cannot be reached, and how to
get a first device or release when there are none."""

from __future__ import annotations

import pytest

import conftest
from picoctl.cli import main


def test_an_unreachable_hub_names_where_its_url_comes_from(tmp_path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from picoctl.commands.init import init_site

    cfg = init_site(tmp_path / "site", conftest.free_port())  # a hub that was started on another port
    monkeypatch.delenv("PICOCTL_HUB_URL", raising=False)
    assert main(["--config", str(cfg), "devices"]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "hub not reachable at" in err and "$PICOCTL_HUB_URL" in err and "hub.public_url in fleet.toml" in err


def test_empty_lists_say_what_to_do_next(hub: conftest.Hub, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    config = str(hub.site / "fleet.toml")
    assert main(["--config", config, "devices"]) == 0
    assert "picoctl devices add ID" in " ".join(capsys.readouterr().out.split())
    assert main(["--config", config, "release", "list"]) == 0
    assert "picoctl release publish" in " ".join(capsys.readouterr().out.split())
