"""The operator API of a real hub: token, devices, releases (publish, import, webhook), history, SSE, CLI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from picoctl import cli, config, history, signing
from picoctl.client import AsyncHubClient, HubClient, HubError
from picoctl.errors import PicoctlError
from picoctl.hub.events import Broadcaster
from picoctl.protocol import DEVICE_ID_RULE
from picoctl.sim.fleet import SimDevice
from loopback import files, serving

APP = {"main.py": b"print('v2')\n"}


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server over a folder, standing in for CI's release storage."""
    root = tmp_path / "www"
    root.mkdir()
    with serving(files(root)) as url:
        yield url, root


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc", "Bearer"])
def test_every_operator_route_needs_the_token(hub, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    for method, path in (("GET", "/api/v1/devices"), ("POST", "/api/v1/devices"), ("GET", "/api/v1/rollouts"),
                         ("GET", "/api/v1/history"), ("GET", "/api/v1/events"), ("PUT", "/api/v1/releases/picow/1.0.0")):
        r = httpx.request(method, hub.url + path, headers=headers, json={})
        assert r.status_code == 401 and "operator token" in r.json()["error"], (method, path)


@pytest.mark.parametrize("body, status, message", [
    ({"id": "bad id", "type": "picow"}, 400, "device id"),
    ({"id": "gh-02", "type": "toaster"}, 400, "unknown device type"),
    ({"id": "gh-02", "type": "picow", "channel": "beta"}, 400, "channel"),
    ({"id": "gh-02"}, 400, "missing field 'type'"),
    ({"id": 7, "type": "picow"}, 400, "'id' must be a str"),
    ({"id": "gh-01", "type": "picow"}, 409, "already registered"),
])
def test_register_refuses_bad_devices(hub, body: dict, status: int, message: str) -> None:
    hub.register("gh-01")
    r = httpx.post(hub.url + "/api/v1/devices", json=body, headers=hub.auth)
    assert r.status_code == status and message in r.json()["error"]
    assert [d["id"] for d in hub.client.devices()] == ["gh-01"]


def test_a_bad_device_id_is_refused_in_the_words_of_the_rule(hub) -> None:
    """Registering and relaying a heartbeat say the id rule as it is (a relayed id once claimed ':' was allowed)."""
    for bad in ("a:b", "-a", "x" * 65):
        for path, body in (("/api/v1/devices", {"id": bad, "type": "picow"}), (f"/api/v1/devices/{bad}/heartbeat", {})):
            r = httpx.post(hub.url + path, json=body, headers=hub.auth)
            assert (r.status_code, r.json()["error"]) == (400, f"device id {bad!r}: expected {DEVICE_ID_RULE}"), path
    assert hub.client.devices() == []


def test_device_views_status_channel_and_relayed_usb_heartbeats(hub) -> None:
    key = hub.register("gh-01")
    assert hub.client.devices()[0]["status"] == "new"
    with httpx.Client(base_url=hub.url) as c:
        SimDevice("gh-01", key).heartbeat(c)
    assert hub.client.devices()[0]["status"] == "online"
    hub.client.set_channel("gh-01", "canary")
    hub.client.relay_heartbeat("pico-e6614c31", {"version": "1.2.0", "uptime_s": 4.5, "readings": {"temp_c": 24.5}})
    devices = {d["id"]: d for d in hub.client.devices()}
    assert devices["gh-01"]["channel"] == "canary"
    assert devices["pico-e6614c31"]["type"] == "pico" and devices["pico-e6614c31"]["readings"] == {"temp_c": 24.5}
    detail = hub.client.device("gh-01")
    assert len(detail["heartbeats"]) == 1 and [e["kind"] for e in detail["events"]][:2] == ["device_registered", "device_channel"]
    with pytest.raises(HubError, match="no device 'nope'"):
        hub.client.device("nope")


def test_stale_and_offline_follow_the_type_interval(hub) -> None:
    key = hub.register("gh-01")
    with httpx.Client(base_url=hub.url) as c:
        SimDevice("gh-01", key).heartbeat(c)
    import sqlite3
    import time

    db = sqlite3.connect(hub.cfg.data_dir / "fleet.db")
    interval = hub.cfg.device_type("picow").heartbeat_interval_s
    db.execute("UPDATE devices SET last_seen = ?", (time.time() - 4 * interval,))
    db.commit()
    assert hub.client.devices()[0]["status"] == "stale"
    db.execute("UPDATE devices SET last_seen = ?", (time.time() - 11 * interval,))
    db.commit()
    assert hub.client.devices()[0]["status"] == "offline"


def test_publish_verifies_and_refuses_duplicates_with_other_content(hub) -> None:
    rel = hub.build_release("1.1.0", APP)
    first = hub.publish(rel)
    assert first["added"] is True
    assert hub.publish(rel)["added"] is False  # the same content again: nothing changes
    other = hub.site / "other"
    shutil.copytree(rel, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["created_at"] = "2030-01-01T00:00:00Z"
    meta["signature"] = signing.sign_document(meta, hub.signing_key)
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(HubError, match="already published with other content") as exc:
        hub.publish(other)
    assert exc.value.status == 409
    [stored] = hub.client.releases("picow")
    assert stored["meta"]["created_at"] == first["meta"]["created_at"]


def test_publish_refuses_bad_signatures_and_altered_artifacts(hub) -> None:
    unsigned = hub.site / "unsigned"
    from picoctl import release

    (hub.site / "app").mkdir()
    (hub.site / "app" / "main.py").write_bytes(b"x = 1\n")
    release.build("picow", "2.0.0", hub.site / "app", unsigned)
    with pytest.raises(HubError, match="not signed"):
        hub.publish(unsigned)
    other_key, _ = signing.generate_keypair()
    foreign = hub.site / "foreign"
    release.build("picow", "2.0.0", hub.site / "app", foreign, key_hex=other_key)
    with pytest.raises(HubError, match="signature does not verify"):
        hub.publish(foreign)
    altered = hub.build_release("2.0.1", APP)
    artifact = altered / json.loads((altered / "meta.json").read_text())["artifact"]
    artifact.write_bytes(artifact.read_bytes().replace(b"v2", b"v3"))
    with pytest.raises(HubError, match="sha256 does not match") as exc:
        hub.publish(altered)
    assert exc.value.status == 422
    assert hub.client.releases() == []
    assert not any((hub.cfg.data_dir / "tmp").iterdir())


@pytest.mark.parametrize("header, message", [(None, "missing X-Picoctl-Meta"), ("%%%", "not base64"),
                                             (base64.b64encode(b"[1]").decode(), "not for picow")])
def test_publish_with_a_bad_meta_header(hub, header: str | None, message: str) -> None:
    headers = hub.auth | ({"X-Picoctl-Meta": header} if header else {})
    r = httpx.put(hub.url + "/api/v1/releases/picow/1.0.0", content=b"x", headers=headers)
    assert r.status_code == 400 and message in r.json()["error"]


def test_import_without_a_url_pulls_every_configured_one_as_the_timer_does(hub, static_server, capsys) -> None:
    base, root = static_server
    shutil.copytree(hub.build_release("1.4.0", APP), root / "latest-picow")
    shutil.copytree(hub.build_release("2.0.0", APP, "pi"), root / "latest-pi")
    argv = ["--config", str(hub.site / "fleet.toml"), "release", "import", "--json"]
    assert cli.main(argv) == 2  # release.import_urls is empty: nothing to pull
    assert "release.import_urls" in capsys.readouterr().err

    hub.cfg.release.import_urls = f"{base}/latest-picow/meta.json {base}/gone/meta.json {base}/latest-pi/meta.json"
    config.save(hub.cfg, hub.site / "fleet.toml")
    os.environ["PICOCTL_HUB_URL"] = hub.url
    try:
        assert cli.main(argv) == 1  # the missing one fails the run; the others are imported all the same
        first = json.loads(capsys.readouterr().out)
        assert [a.get("added") for a in first] == [True, None, True] and "HTTP 404" in first[1]["error"]
        assert {(r["target"], r["version"]) for r in hub.client.releases()} == {("picow", "1.4.0"), ("pi", "2.0.0")}
        hub.cfg.release.import_urls = f"{base}/latest-picow/meta.json"
        config.save(hub.cfg, hub.site / "fleet.toml")
        assert cli.main(argv) == 0  # the next run of the timer: already there, nothing changes
        assert [a["added"] for a in json.loads(capsys.readouterr().out)] == [False]
    finally:
        os.environ.pop("PICOCTL_HUB_URL", None)


def test_import_from_a_url_and_the_ci_webhook(hub, static_server) -> None:
    base, root = static_server
    shutil.copytree(hub.build_release("1.2.0", APP), root / "r120")
    shutil.copytree(hub.build_release("1.3.0", APP | {"lib.py": b"y = 2\n"}), root / "r130")
    imported = hub.client.import_release(f"{base}/r120/meta.json")
    assert imported["added"] is True and imported["meta"]["version"] == "1.2.0"
    with pytest.raises(HubError, match="HTTP 404"):
        hub.client.import_release(f"{base}/missing/meta.json")

    hub.set_webhook_secret("s3cret")
    hub.restart()
    body = json.dumps({"meta_url": f"{base}/r130/meta.json"}).encode()
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    other = "sha256=" + hmac.new(b"s3cret", body + b" ", hashlib.sha256).hexdigest()
    for sig in (None, "sha256=" + "0" * 64, other, good[7:]):
        headers = {"X-Hub-Signature-256": sig} if sig else {}
        r = httpx.post(hub.url + "/api/v1/webhook", content=body, headers=headers)
        assert r.status_code == 401 and "X-Hub-Signature-256" in r.json()["error"]
    r = httpx.post(hub.url + "/api/v1/webhook", content=body, headers={"X-Hub-Signature-256": good})
    assert r.status_code == 201 and r.json()["meta"]["version"] == "1.3.0"
    assert [r["version"] for r in hub.client.releases("picow")] == ["1.2.0", "1.3.0"]
    assert [e["actor"] for e in hub.client.history(kind="release_published")] == ["operator", "webhook"]


def test_history_filters_and_the_pi_reporter(hub) -> None:
    hub.register("gh-01")
    hub.register("gh-02")
    cfg = config.load(hub.site / "fleet.toml")
    cfg.hub.public_url = hub.url
    assert history.record(cfg, "pi_deploy", actor="pi", version="2.0.0", result="ok", detail="switched") is True
    assert [e["kind"] for e in hub.client.history(version="2.0.0")] == ["pi_deploy"]
    assert [e["device_id"] for e in hub.client.history(device="gh-02")] == ["gh-02"]
    everything = hub.client.history()
    assert [e["kind"] for e in hub.client.history(after=everything[0]["id"], limit=1)] == ["pi_deploy"]
    auth = hub.auth
    for query in ("after=x", "limit=0", "limit=100000"):
        r = httpx.get(f"{hub.url}/api/v1/history?{query}", headers=auth)
        assert r.status_code == 400 and "query parameter" in r.json()["error"]
    r = httpx.post(f"{hub.url}/api/v1/history", json={"actor": "pi"}, headers=auth)
    assert r.status_code == 400 and "kind" in r.json()["error"]


def test_event_stream_pushes_committed_changes_and_resumes_with_last_event_id(hub) -> None:
    key = hub.register("gh-01")

    async def scenario() -> None:
        async with AsyncHubClient(hub.url, hub.token) as client:
            seen: list = []

            async def follow(last: str | None, until: str) -> None:
                async for ev in client.events(last):
                    seen.append(ev)
                    if ev.event == until:
                        return

            task = asyncio.create_task(follow(None, "heartbeat"))
            await asyncio.sleep(0.3)
            with httpx.Client(base_url=hub.url) as c:
                await asyncio.to_thread(SimDevice("gh-01", key).heartbeat, c)
            await asyncio.wait_for(task, 5)
            beat = seen[-1]
            assert beat.data["device_id"] == "gh-01" and beat.data["counter"] == 1000001
            await client.set_channel("gh-01", "canary")
            seen.clear()
            await asyncio.wait_for(follow(beat.id, "history"), 5)
            assert [e.event for e in seen] == ["device", "history"] and int(seen[0].id) == int(beat.id) + 1
            seen.clear()
            await asyncio.wait_for(follow("1", "resync"), 5)
            assert seen[-1].event == "resync"

    asyncio.run(scenario())


def test_a_slow_subscriber_gets_resync_and_never_blocks_the_publisher() -> None:
    async def scenario() -> None:
        b = Broadcaster(queue_size=3)
        slow = b.subscribe()
        fast = b.subscribe()
        for i in range(4):
            b.publish("heartbeat", {"n": i})
            if i < 3:
                fast.queue.get_nowait()  # this one keeps up
        b.publish("heartbeat", {"n": 4})
        got = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        assert [m.event for m in got] == ["resync", "heartbeat"] and got[1].data == '{"n":4}'
        assert [fast.queue.get_nowait().data for _ in range(2)] == ['{"n":3}', '{"n":4}']

    asyncio.run(scenario())


def test_client_names_the_unreachable_hub() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # bound, not listening: refused
    with HubClient(url, "t") as client, pytest.raises(PicoctlError, match=f"hub not reachable at {url}"):
        client.devices()


def test_cli_devices_history_and_publish(hub, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PICOCTL_HUB_URL", hub.url)
    conf = str(hub.site / "fleet.toml")
    rel = hub.build_release("1.1.0", APP)
    assert cli.main(["--config", conf, "release", "publish", str(rel), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["meta"]["version"] == "1.1.0"
    assert cli.main(["--config", conf, "devices", "add", "gh-01", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["key"]) == 64
    assert cli.main(["--config", conf, "devices", "--json"]) == 0
    assert [d["id"] for d in json.loads(capsys.readouterr().out)] == ["gh-01"]
    assert cli.main(["--config", conf, "devices"]) == 0
    assert "gh-01" in capsys.readouterr().out
    assert cli.main(["--config", conf, "devices", "show", "gh-01"]) == 0
    assert "device_registered" in capsys.readouterr().out
    assert cli.main(["--config", conf, "devices", "show", "gh-404"]) == 1
    assert "no device 'gh-404'" in capsys.readouterr().err
    assert cli.main(["--config", conf, "history", "--device", "gh-01", "--json"]) == 0
    assert [e["kind"] for e in json.loads(capsys.readouterr().out)] == ["device_registered"]
    assert cli.main(["--config", conf, "history", "--limit", "0"]) == 2
    hub.kill()
    assert cli.main(["--config", conf, "devices"]) == 1
    assert f"hub not reachable at {hub.url}" in capsys.readouterr().err


@pytest.mark.parametrize("body, status, message", [
    (b"{oops", 400, "not valid JSON"),
    (b'"a string"', 400, "must be a JSON object"),
    (b"{}" + b" " * (1024 * 1024), 413, "limit"),
], ids=["malformed", "not-an-object", "too-big"])
def test_operator_bodies_malformed_or_too_big(hub, body: bytes, status: int, message: str) -> None:
    r = httpx.post(hub.url + "/api/v1/devices", content=body,
                   headers=hub.auth | {"Content-Type": "application/json"})
    assert r.status_code == status and message in r.json()["error"]
    assert hub.client.devices() == []
