"""Decommissioning a device through the real hub: `DELETE /api/v1/devices/{id}` and `picoctl devices remove`.
Its key is refused from then on, it leaves the fleet, its history stays."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import conftest
from picoctl.cli import main
from picoctl.client import HubError
from picoctl.sim.fleet import DeviceProtocolError, SimDevice


def test_a_removed_device_is_refused_and_its_history_stays(hub: conftest.Hub, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sims = {did: SimDevice(did, hub.register(did)) for did in ("gh-01", "gh-02")}
    with httpx.Client(base_url=hub.url, timeout=10) as c:
        for sim in sims.values():
            sim.heartbeat(c)
        monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
        assert main(["--config", str(hub.site / "fleet.toml"), "devices", "remove", "gh-01"]) == 0
        out = capsys.readouterr().out
        assert "removed gh-01" in out and "its history stays" in " ".join(out.split())

        with pytest.raises(DeviceProtocolError):
            sims["gh-01"].heartbeat(c)  # its key no longer works
        sims["gh-02"].heartbeat(c)  # the others' still do
    assert [d["id"] for d in hub.client.devices()] == ["gh-02"]
    with pytest.raises(HubError) as gone:
        hub.client.device("gh-01")
    assert gone.value.status == 404
    with pytest.raises(HubError) as again:
        hub.client.remove_device("gh-01")
    assert again.value.status == 404
    kinds = [e["kind"] for e in hub.client.history(device="gh-01")]
    assert kinds[0] == "device_registered" and kinds[-1] == "device_removed"


def test_removing_an_unknown_device_is_a_clear_404(hub: conftest.Hub, tmp_path: Path) -> None:
    with pytest.raises(HubError) as refused:
        hub.client.remove_device("nope")
    assert refused.value.status == 404 and "no device 'nope'" in str(refused.value)
