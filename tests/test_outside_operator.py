"""The operator's CLI against a hub that is not quite one: a redirect or an empty answer where the hub
answers JSON is one clear line and a failure, never taken as done or as an empty list; a hub over TLS
with a self-signed certificate is trusted by the one fleet.toml names, and by no other; a device id
or a version that would name another route is refused before anything is sent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopback import Peer, serving, site_for
from picoctl import config
from picoctl.client import HubClient, HubError
from picoctl.errors import BadInput
from picoctl.protocol import DEVICE_ID_RULE
from conftest import self_signed


class NotQuite(Peer):
    """Answers every request as `mode` says: "redirect" elsewhere on itself, "empty" (200, no body), or
    "odd" (200, `body`)."""

    mode = "redirect"
    body = b""  # what "odd" answers

    def _any(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.mode == "odd":
            self.answer(200, self.body)
        elif self.mode == "redirect":
            self.send_response(307)
            self.send_header("Location", f"https://hub.example{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.answer(200)

    do_GET = do_PUT = do_POST = do_DELETE = _any  # noqa: N815 (http.server's naming)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("not-quite")
    with serving(NotQuite) as url:
        path, folder = site_for(url, tmp)
        yield {"url": url, "config": path, "release": folder}


def _fails(site: dict, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(site["config"]), *args],
                         capture_output=True, text=True, timeout=60)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1 and "PICOCTL_DEBUG" not in lines[0], run  # not a defect's line
    return lines[0]


@pytest.mark.parametrize("args", [("devices",), ("release", "list"), ("release", "remove", "picow", "1.0.0")])
def test_a_redirect_is_not_an_answer(site: dict, args: tuple[str, ...]) -> None:
    NotQuite.mode = "redirect"
    line = _fails(site, *args)
    assert "HTTP 307" in line and "a redirect to https://hub.example/api/v1/" in line, line
    assert "$PICOCTL_HUB_URL or hub.public_url" in line, line


def test_a_redirected_history_event_is_not_taken(site: dict) -> None:
    NotQuite.mode = "redirect"
    with HubClient(site["url"], "token") as hub, pytest.raises(HubError) as raised:
        hub.add_history({"kind": "usb_flash", "result": "ok"})
    assert raised.value.status == 307


@pytest.mark.parametrize("args", [("release", "publish", "REL"), ("release", "remove", "picow", "1.0.0")])
def test_an_empty_answer_where_an_object_is_due_says_so(site: dict, args: tuple[str, ...]) -> None:
    NotQuite.mode = "empty"
    line = _fails(site, *(str(site["release"]) if a == "REL" else a for a in args))
    assert "with an unexpected shape: the answer: expected an object, got nothing" in line, line


def test_the_cli_trusts_the_hubs_own_self_signed_certificate_and_no_other(hub, tmp_path: Path) -> None:
    cert, _ = self_signed(hub.site)
    hub.cfg.hub.tls_cert, hub.cfg.hub.tls_key = "hub.crt", "hub.key"
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    env = {**os.environ, "PICOCTL_HUB_URL": hub.url}
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(hub.site / "fleet.toml"), "release", "list"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    other = tmp_path / "other"
    other.mkdir()
    self_signed(other)  # another hub's certificate where this one's was
    shutil.copy(other / "hub.crt", cert)
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(hub.site / "fleet.toml"), "release", "list"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1 and "certificate verify failed" in run.stderr, run.stderr
    assert "not trusted" in run.stderr and "hub.tls_cert in fleet.toml names its certificate" in run.stderr, run.stderr


@pytest.mark.parametrize("args", [("devices", "remove", "../releases/picow/1.0.0"), ("devices", "show", "gh-01?x=1"),
                                  ("devices", "log", "../releases")])
def test_a_device_id_that_names_another_route_is_refused_before_it_is_sent(hub, args: tuple[str, ...]) -> None:
    hub.publish(hub.build_release("1.0.0", {"main.py": b"print(1)\n"}))
    hub.register("gh-01")
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(hub.site / "fleet.toml"), *args],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PICOCTL_HUB_URL": hub.url})
    assert run.returncode == 2 and run.stderr.strip().endswith(f"is not a device id ({DEVICE_ID_RULE})"), run.stderr
    assert [r["version"] for r in hub.client.releases()] == ["1.0.0"]
    with pytest.raises(BadInput, match="is not a semantic version"):
        hub.client.remove_release("picow", "1.0.0/../../../devices/gh-01")
    assert [d["id"] for d in hub.client.devices()] == ["gh-01"]


DEVICE = {"id": "gh-01", "type": "picow", "channel": "stable", "version": "1.0.0", "status": "online", "last_seen": 1.0,
          "rssi": None, "keys": None, "error_summary": "", "last_error": None, "boots": None, "reset_cause": None,
          "firmware": {}, "heartbeats": [], "events": [],
          "offer": {"rollout_id": 1, "version": "1.1.0", "seq": 1, "phase": "failed", "detail": "x", "transient": True,
                    "retry_at": 1.0}}
ROLLOUT = {"id": 1, "target": "picow", "version": "1.1.0", "state": "active", "stages": [], "failures": [],
           "retrying": [{"device_id": "gh-01", "detail": "x", "retry_at": 1.0}]}


@pytest.mark.parametrize(("args", "answer", "said"), [
    (("devices", "show", "gh-01"), json.dumps(DEVICE).replace('"last_seen": 1.0', '"last_seen": 1e400'),
     "with something that is not JSON (the answer: number 1e400 is out of range)"),
    (("devices", "show", "gh-01"), json.dumps(DEVICE).replace('"retry_at": 1.0', '"retry_at": "soon"'),
     "offer.retry_at: expected a number or null, got a string"),
    (("rollout", "status", "1"), json.dumps(ROLLOUT).replace('"device_id": "gh-01"', '"device_id": 3'),
     "retrying[0].device_id: expected a string, got a number"),
], ids=["last_seen-1e400", "retry_at-text", "retrying-id-number"])
def test_a_number_or_a_field_no_reader_can_take_is_said_as_the_hubs_fault(site: dict, args: tuple[str, ...],
                                                                          answer: str, said: str) -> None:
    NotQuite.mode, NotQuite.body = "odd", answer.encode()
    assert said in _fails(site, *args)


@pytest.mark.parametrize("older", [False, True])
def test_a_hubs_answer_with_or_without_the_retry_fields_is_read(site: dict, older: bool) -> None:
    offer = {k: v for k, v in DEVICE["offer"].items() if not older or k not in ("transient", "retry_at")}
    rollout = {k: v for k, v in ROLLOUT.items() if not older or k != "retrying"}
    for args, answer in ((("devices", "show", "gh-01"), DEVICE | {"offer": offer}), (("rollout", "status", "1"), rollout)):
        NotQuite.mode, NotQuite.body = "odd", json.dumps(answer).encode()
        run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(site["config"]), *args],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and ("retrying" in run.stdout) != older, run
