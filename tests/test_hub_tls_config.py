"""The hub over TLS (certificate fingerprint for pinning) and the documented example fleet.toml."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import sys
import tomllib
from dataclasses import asdict, fields
from pathlib import Path

import httpx
import pytest
from picoctl import config
from picoctl.client import HubClient
from picoctl.errors import BadInput
from picoctl.hub.tls import fingerprint
from picoctl.sim.fleet import SimDevice

from conftest import self_signed

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "fleet.example.toml"


def test_hub_over_tls_with_a_pinnable_fingerprint(hub) -> None:
    cert, key = self_signed(hub.site)
    hub.cfg.hub.tls_cert, hub.cfg.hub.tls_key = "hub.crt", "hub.key"
    config.save(hub.cfg, hub.site / "fleet.toml")
    hub.restart()
    assert hub.url.startswith("https://")
    pinned = fingerprint(cert)
    assert f"TLS certificate sha256 fingerprint {pinned}" in hub.log_path.read_text()
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # a pinning board checks the hash instead
    with socket.create_connection(("127.0.0.1", hub.port)) as raw, ctx.wrap_socket(raw) as tls:
        assert hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest() == pinned
    trust = ssl.create_default_context(cafile=str(cert))
    with HubClient(hub.url, hub.token, verify=trust) as client:
        device_key = client.register_device("gh-01")["key"]
        with httpx.Client(base_url=hub.url, verify=trust) as c:
            SimDevice("gh-01", device_key).heartbeat(c)
        assert client.devices()[0]["status"] == "online"
    with pytest.raises(httpx.ConnectError):
        httpx.get(hub.url + "/healthz")  # an unknown certificate is refused by a verifying client


def test_fingerprint_of_a_bad_certificate(tmp_path: Path) -> None:
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    with pytest.raises(BadInput, match="not a PEM certificate"):
        fingerprint(bad)


def test_example_config_documents_every_key_with_its_default() -> None:
    loaded = config.load(EXAMPLE)
    got, want = asdict(loaded), asdict(config.FleetConfig())
    got.pop("path"), want.pop("path")
    assert got == want
    raw = tomllib.loads(EXAMPLE.read_text())
    for section, cls in config._SECTIONS.items():
        assert set(raw[section]) == {f.name for f in fields(cls)}, section
    for t in raw["device_types"].values():
        assert set(t) == {f.name for f in fields(config.DeviceTypeConfig)}


def _serve(conf: Path, port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "picoctl", "--config", str(conf), "serve", "--host", "127.0.0.1",
                           "--port", str(port)], capture_output=True, text=True, timeout=30)


def test_serve_refuses_a_bad_setup_with_one_line(hub) -> None:
    conf = hub.site / "fleet.toml"
    second = _serve(conf, hub.port + 1 if hub.port < 65535 else hub.port - 1)
    assert second.returncode == 1 and "another hub is already serving this data folder" in second.stderr
    hub.kill()
    hub.cfg.hub.tls_cert = "hub.crt"
    config.save(hub.cfg, conf)
    half_tls = _serve(conf, hub.port)
    assert half_tls.returncode == 2 and "tls_cert and hub.tls_key must be given together" in half_tls.stderr
    hub.cfg.hub.tls_cert = ""
    config.save(hub.cfg, conf)
    (hub.site / "operator.token").unlink()
    no_token = _serve(conf, hub.port)
    assert no_token.returncode == 2 and "cannot read operator token" in no_token.stderr
    assert "Traceback" not in no_token.stderr + half_tls.stderr + second.stderr
