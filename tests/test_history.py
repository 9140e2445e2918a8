"""Local events reach the hub's history in order, queued while the hub is unreachable."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from picoctl import config, history
from picoctl.commands.init import init_site


class Recorder(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = self.path == "/api/v1/history" and self.headers["Authorization"] == f"Bearer {self.server.token}"  # type: ignore[attr-defined]
        if ok:
            Recorder.received.append(json.loads(body))
        reply = b'{"id": 1}' if ok else b'{"error": "bad token"}'  # the hub's JSON answers
        self.send_response(201 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.FleetConfig:
    cfg = config.load(init_site(tmp_path / "site"))
    Recorder.received = []
    return cfg


def serve(cfg: config.FleetConfig, port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    server.token = cfg.read_token()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_queues_while_unreachable_then_flushes_in_order(site: config.FleetConfig, monkeypatch) -> None:
    server = serve(site)
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    monkeypatch.setenv("PICOCTL_HUB_URL", f"http://127.0.0.1:{port}")
    assert history.record(site, "pi_deploy", actor="pi", version="1.0.0", result="ok") is False
    assert history.record(site, "pi_rollback", actor="pi", version="0.9.0", result="ok") is False
    queued = history.queue_path(site).read_text().splitlines()
    assert [json.loads(line)["kind"] for line in queued] == ["pi_deploy", "pi_rollback"]

    server = serve(site, port)
    try:
        assert history.record(site, "usb_flash", actor="usb", device_id="pico-1", result="ok") is True
    finally:
        server.shutdown()
        server.server_close()
    assert [e["kind"] for e in Recorder.received] == ["pi_deploy", "pi_rollback", "usb_flash"]
    assert not history.queue_path(site).exists()


def test_rejected_token_keeps_the_event(site: config.FleetConfig, monkeypatch) -> None:
    server = serve(site)
    server.token = "other"  # type: ignore[attr-defined]
    monkeypatch.setenv("PICOCTL_HUB_URL", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        assert history.record(site, "pi_deploy", actor="pi") is False
    finally:
        server.shutdown()
        server.server_close()
    assert len(history.queue_path(site).read_text().splitlines()) == 1


def test_torn_last_line_loses_only_itself(site: config.FleetConfig, monkeypatch) -> None:
    path = history.queue_path(site)
    path.write_text(json.dumps({"kind": "a"}) + "\n" + '{"kind": "tor')
    monkeypatch.setenv("PICOCTL_HUB_URL", "http://127.0.0.1:9")
    history.record(site, "b", actor="pi")
    assert [json.loads(line)["kind"] for line in path.read_text().splitlines()] == ["a", "b"]


RECORDER = """
import sys
from picoctl import config, history
cfg = config.load(sys.argv[1])
for n in range(int(sys.argv[3])):
    history.record(cfg, "usb_push", actor="t", device_id=sys.argv[2], detail=str(n))
"""


def test_processes_recording_at_once_queue_every_event(site: config.FleetConfig, tmp_path: Path) -> None:
    """The queue is rewritten by each recorder: without its lock, concurrent ones lose each other's events."""
    import subprocess
    import sys

    env = {**os.environ, "PICOCTL_HUB_URL": "http://127.0.0.1:9"}
    procs = [subprocess.Popen([sys.executable, "-c", RECORDER, str(site.path), f"p{i}", "25"], env=env)
             for i in range(4)]
    for p in procs:
        assert p.wait(60) == 0
    queued = [json.loads(line) for line in history.queue_path(site).read_text().splitlines()]
    for i in range(4):
        assert [e["detail"] for e in queued if e["device_id"] == f"p{i}"] == [str(n) for n in range(25)]
    assert not [p for p in site.data_dir.iterdir() if p.name.startswith(".")], "a temporary file was left"
