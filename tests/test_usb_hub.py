"""USB boards in the fleet view: the real hub (uvicorn on 127.0.0.1) receives a virtual Pico's
heartbeats through `picoctl usb log` and its pushes through the history."""

from __future__ import annotations

import shutil
import threading

import httpx
import pytest
import uvicorn

from picoctl import config, release
from picoctl.history import local_actor
from picoctl.cli import main
from picoctl.commands.init import init_site
from picoctl.hub.app import create_app
from picoctl.sim.virtual_pico import VirtualPico
from picoctl.sim.board import find_micropython
from conftest import free_port, pico_flash
from picoctl.shipped import PICO_APP
from waiting import wait_for

pytestmark = [pytest.mark.micropython,
              pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port not installed")]



@pytest.fixture
def hub(tmp_path, monkeypatch):
    path = init_site(tmp_path / "site")
    cfg = config.load(path)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the hub started", every=0.02)
    monkeypatch.setenv("PICOCTL_HUB_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PICOCTL_CONFIG", str(path))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {cfg.read_token()}"})
    yield client
    client.close()
    server.should_exit = True
    thread.join(timeout=10)


def test_usb_pico_shows_in_the_fleet_with_its_pushes(tmp_path, hub):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(PICO_APP, src / "main.py")
    key = (tmp_path / "site" / "keys" / "release.key").read_text().strip()  # a site's releases are signed by its key
    release.build("pico", "2.1.0", src, tmp_path / "rel", key_hex=key)
    with VirtualPico(pico_flash(tmp_path / "flash", "pico-usb-3", app=False)) as board:
        assert main(["usb", "push", str(tmp_path / "rel"), "--port", board.port]) == 0
        assert main(["usb", "log", "--port", board.port, "--seconds", "1"]) == 0
    devices = {d["id"]: d for d in hub.get("/api/v1/devices").json()}
    assert devices["pico-usb-3"]["version"] == "2.1.0" and devices["pico-usb-3"]["mem_free"] > 0
    (push,) = hub.get("/api/v1/history", params={"kind": "usb_push"}).json()
    assert (push["device_id"], push["version"], push["result"], push["actor"]) == ("pico-usb-3", "2.1.0", "ok", local_actor())
