"""Every fetch picoctl makes is bounded in time and in size (picoctl.fetch_bounds): real local servers
that drip a meta.json or an artifact to the hub's import and to `pi deploy <url>`, and a hub that
answers a relayed heartbeat with more than any answer may hold. [fetch] is made short here, so each
fetch is given up on in seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from loopback import Peer, serving
from picoctl import config, release, signing
from picoctl.client import ANSWER_S, AsyncHubClient
from picoctl.errors import PicoctlError
from picoctl.fetch_bounds import MAX_ANSWER_BYTES, allowed_s
from picoctl.pideploy import fetch, health
from picoctl.progress import Progress
from picoctl.protocol import META_HEADER
from picoctl.sim.local_hub import LocalHub

RULE = config.FetchConfig(floor_s=1.5, min_rate=1 << 20)  # a meta.json at its cap: 2.5 s


class Dripper(Peer):
    """Files of `root`; a path under /drip/ is the same file, its body a byte every `interval_s`."""

    root: Path
    interval_s = 0.2

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        dripped = self.path.startswith("/drip/")
        path = self.root / self.path.removeprefix("/drip/" if dripped else "/")
        if not path.is_file():
            return self.answer(404)
        body = path.read_bytes()
        if not dripped:
            return self.answer(200, body, "application/octet-stream")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.interval_s)
        except OSError:
            return


def _drip_server(root: Path) -> AbstractContextManager[str]:
    return serving(type("Files", (Dripper,), {"root": root}))


def _release(tmp: Path, target: str, key: str, url: str) -> Path:
    """A release of `target` signed with `key`, in tmp/files/<target>, its artifact_url under /drip/."""
    (tmp / "src").mkdir(exist_ok=True)
    (tmp / "src" / "main.py").write_text("print('hi')\n" * 50)
    folder = tmp / "files" / target
    release.build(target, "1.0.0", tmp / "src", folder, key_hex=key)
    meta = json.loads((folder / "meta.json").read_text())
    del meta["signature"]
    meta["artifact_url"] = f"{url}/drip/{target}/{meta['artifact']}"
    meta["signature"] = signing.sign_document(meta, key)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _one_line_within(message: str, took: float, size: int) -> None:
    limit = allowed_s(RULE, size)
    assert f"not received within {limit:.1f} s" in message and "\n" not in message, message
    assert took < limit + 3, took


# --- the hub's import ---

@pytest.fixture(scope="module")
def hub_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("bounds-hub")
    hub = LocalHub.create(tmp / "site")
    cfg = config.load(tmp / "site" / "fleet.toml")
    cfg.fetch = RULE
    config.save(cfg, tmp / "site" / "fleet.toml")
    with _drip_server(tmp / "files") as url:
        folder = _release(tmp, "picow", hub.signing_key, url)
        try:
            hub.start()
            yield {"hub": hub, "url": url, "meta": json.loads((folder / "meta.json").read_text())}
        finally:
            hub.close()


def _import(hub_world: dict, url: str) -> tuple[httpx.Response, float]:
    hub = hub_world["hub"]
    t0 = time.monotonic()
    r = httpx.post(hub.url + "/api/v1/releases/import", json={"url": url}, timeout=60,
                   headers={"Authorization": f"Bearer {hub.token}"})
    return r, time.monotonic() - t0


def test_the_hub_gives_up_on_a_dripped_meta_json_in_time(hub_world: dict) -> None:
    r, took = _import(hub_world, f"{hub_world['url']}/drip/picow/meta.json")
    assert r.status_code == 502, r.text[:300]
    _one_line_within(r.json()["error"], took, release.MAX_META_BYTES)


def test_the_hub_gives_up_on_a_dripped_artifact_in_time(hub_world: dict) -> None:
    r, took = _import(hub_world, f"{hub_world['url']}/picow/meta.json")
    assert r.status_code == 502, r.text[:300]
    _one_line_within(r.json()["error"], took, hub_world["meta"]["size"])
    assert hub_world["hub"].client.releases() == []
    assert "Traceback" not in hub_world["hub"].log_path.read_text()


def test_an_import_slower_than_a_read_timeout_but_within_the_rule_is_waited_for(tmp_path: Path) -> None:
    hub = LocalHub.create(tmp_path / "site")
    handler = type("Files", (Dripper,), {"root": tmp_path / "files"})
    with serving(handler) as url:
        size = json.loads((_release(tmp_path, "picow", hub.signing_key, url) / "meta.json").read_text())["size"]
        handler.interval_s = (ANSWER_S + 3) / size  # past the client's bound of an answer, inside [fetch]'s 30 s
        try:
            hub.start()
            assert hub.client.import_release(f"{url}/picow/meta.json")["meta"]["version"] == "1.0.0"
        finally:
            hub.close()


# --- the Pi's `pi deploy <url>` ---

@pytest.fixture(scope="module")
def pi_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("bounds-pi")
    private, public = signing.generate_keypair()
    cfg = config.FleetConfig(path=tmp / "fleet.toml")
    cfg.release.public_key = public
    cfg.pi.root = str(tmp / "pi-root")
    cfg.fetch = RULE
    config.save(cfg, cfg.path)
    with _drip_server(tmp / "files") as url:
        folder = _release(tmp, "pi", private, url)
        yield {"cfg": cfg, "url": url, "meta": json.loads((folder / "meta.json").read_text())}


def _pi_refused(pi_world: dict, source: str, tmp_path: Path) -> tuple[str, float]:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    t0 = time.monotonic()
    with pytest.raises(PicoctlError) as caught:
        fetch.fetch(pi_world["cfg"], source, incoming, Progress("pi deploy"))
    assert list(incoming.iterdir()) == []
    return str(caught.value), time.monotonic() - t0


def test_pi_deploy_gives_up_on_a_dripped_meta_json_in_time(pi_world: dict, tmp_path: Path) -> None:
    message, took = _pi_refused(pi_world, f"{pi_world['url']}/drip/pi/meta.json", tmp_path)
    _one_line_within(message, took, release.MAX_META_BYTES)


def test_pi_deploy_gives_up_on_a_dripped_artifact_in_time(pi_world: dict, tmp_path: Path) -> None:
    message, took = _pi_refused(pi_world, f"{pi_world['url']}/pi/meta.json", tmp_path)
    _one_line_within(message, took, pi_world["meta"]["size"])


def test_the_pi_deploy_command_says_so_in_one_line(pi_world: dict) -> None:
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(pi_world["cfg"].path), "pi", "deploy",
                          f"{pi_world['url']}/pi/meta.json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "not received within" in lines[0] and "Traceback" not in run.stderr, run.stderr
    assert time.monotonic() - t0 < allowed_s(pi_world["cfg"].fetch, pi_world["meta"]["size"]) + 8


def test_a_health_check_of_an_app_that_drips_its_answer_fails_in_time(tmp_path: Path) -> None:
    (tmp_path / "healthz").write_text(json.dumps({"version": "1.0.0"}))
    with _drip_server(tmp_path) as url:
        t0 = time.monotonic()
        ok, seen = health.wait_healthy(f"{url}/drip/healthz", 1.5, 0.1, "1.0.0")
        took = time.monotonic() - t0
        assert health.check_once(f"{url}/healthz", "1.0.0")[0]
    assert not ok and "not received within" in seen, seen
    assert took < 3, took


# --- the hub's answer to a relayed heartbeat (usb follow, usb log) ---

def test_a_huge_answer_to_a_relayed_heartbeat_is_cut_at_the_cap() -> None:
    sent = [0]

    class Flood(Peer):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(64 * MAX_ANSWER_BYTES))
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b" " * MAX_ANSWER_BYTES)
                    sent[0] += MAX_ANSWER_BYTES
            except OSError:
                return

    async def relay(url: str) -> None:
        async with AsyncHubClient(url, "token") as client:
            await client.relay_heartbeat("pico-e6614c31", {"version": "1.0.0", "uptime_s": 1})

    with serving(Flood) as url:
        with pytest.raises(PicoctlError, match=f"the answer is over {MAX_ANSWER_BYTES} bytes"):
            asyncio.run(relay(url))
    assert sent[0] < 16 * MAX_ANSWER_BYTES, sent[0]



def test_the_hub_gives_up_on_a_dripped_upload_in_time(hub_world: dict) -> None:
    """A release upload dripped a byte every 0.3 s, each inside hub.body_timeout_s: a 408, closing the
    connection, once the fetch rule's bound at the artifact's size has passed; nothing is kept."""
    hub, meta = hub_world["hub"], hub_world["meta"]
    header = base64.b64encode(json.dumps(meta).encode()).decode()
    head = (f"PUT /api/v1/releases/{meta['target']}/{meta['version']} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {hub.token}\r\n{META_HEADER}: {header}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {meta['size']}\r\n\r\n")
    host, port = hub.url.removeprefix("http://").split(":")
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())

        def drip() -> None:
            try:
                for _ in range(meta["size"]):
                    sock.sendall(b"x")
                    time.sleep(0.3)
            except OSError:  # the hub closed the connection
                return

        threading.Thread(target=drip, daemon=True).start()
        answer = b""
        while piece := sock.recv(65536):  # until the hub closes the connection
            answer += piece
    took = time.monotonic() - t0
    assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower(), answer[:300]
    _one_line_within(json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"], took, meta["size"])
    assert hub.client.releases() == []


def test_a_failed_health_check_names_the_apps_last_answer_when_the_last_request_got_none() -> None:
    class FirstAnswersThenHangs(Peer):
        served = 0

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            FirstAnswersThenHangs.served += 1
            if FirstAnswersThenHangs.served == 1:
                self.answer(500, b"{}")
            else:
                time.sleep(1.5)  # the app hangs: every later request runs into its deadline

    with serving(FirstAnswersThenHangs) as url:
        ok, seen = health.wait_healthy(f"{url}/healthz", 1.0, 0.05, "1.0.0")
    assert not ok
    assert seen.startswith(f"not healthy within 1s (last answer: {url}/healthz: HTTP 500; then: {url}/healthz: "), seen
    assert "not received within" in seen, seen
