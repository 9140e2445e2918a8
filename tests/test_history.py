"""Local events reach the hub's history in order, queued while the hub is unreachable."""

import json
import os
from pathlib import Path

import httpx
import pytest

from picoctl import config, history
from picoctl.commands.init import init_site
from loopback import Peer, serving


class Recorder(Peer):
    token = ""
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.json_body()
        if self.path == "/api/v1/history" and self.headers["Authorization"] == f"Bearer {self.token}":
            Recorder.received.append(body)
            self.answer(201, b'{"id": 1}')  # the hub's JSON answers
        else:
            self.answer(401, b'{"error": "bad token"}')


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> config.FleetConfig:
    cfg = config.load(init_site(tmp_path / "site"))
    Recorder.token, Recorder.received = cfg.read_token(), []
    return cfg


def test_queues_while_unreachable_then_flushes_in_order(site: config.FleetConfig, monkeypatch) -> None:
    with serving(Recorder) as url:
        pass
    monkeypatch.setenv("PICOCTL_HUB_URL", url)
    assert history.record(site, "pi_deploy", actor="pi", version="1.0.0", result="ok") is False
    assert history.record(site, "pi_rollback", actor="pi", version="0.9.0", result="ok") is False
    queued = history.queue_path(site).read_text().splitlines()
    assert [json.loads(line)["kind"] for line in queued] == ["pi_deploy", "pi_rollback"]

    with serving(Recorder, port=httpx.URL(url).port):
        assert history.record(site, "usb_flash", actor="usb", device_id="pico-1", result="ok") is True
    assert [e["kind"] for e in Recorder.received] == ["pi_deploy", "pi_rollback", "usb_flash"]
    assert not history.queue_path(site).exists()


def test_rejected_token_keeps_the_event(site: config.FleetConfig, monkeypatch) -> None:
    Recorder.token = "other"
    with serving(Recorder) as url:
        monkeypatch.setenv("PICOCTL_HUB_URL", url)
        assert history.record(site, "pi_deploy", actor="pi") is False
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
