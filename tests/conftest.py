"""Shared fixtures: a real hub (`picoctl serve` as a subprocess on 127.0.0.1 and a free port)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from picoctl.shipped import PICO_APP
from picoctl.sim.local_hub import LocalHub as Hub
from picoctl.sim.local_hub import free_port
from picoctl.sim.postgres import TempPostgres, find_bindir

__all__ = ["Hub", "cli_lines", "free_port", "hub", "pg_url", "pico_flash", "postgres", "running", "self_signed"]


def pico_flash(folder: Path, device_id: str, heartbeat_s: float = 0.1, app: bool = True,
               version: str | None = None) -> Path:
    """`folder` as a USB Pico's flash for a VirtualPico: its config.json (id, heartbeat interval), the
    Pico app as main.py unless not `app`, and a version.json when `version` is given."""
    folder.mkdir(parents=True, exist_ok=True)
    if app:
        shutil.copy(PICO_APP, folder / "main.py")
    (folder / "config.json").write_text(json.dumps({"id": device_id, "heartbeat_s": heartbeat_s}))
    if version is not None:
        (folder / "version.json").write_text(json.dumps({"version": version}))
    return folder


def cli_lines(hub: Hub, columns: int, *args: str) -> list[str]:
    """The lines `picoctl ARGS` prints in a terminal `columns` wide, run as typed against `hub`; it must succeed."""
    run = subprocess.run([sys.executable, "-m", "picoctl", "--config", str(hub.site / "fleet.toml"), *args],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PICOCTL_HUB_URL": hub.url, "COLUMNS": str(columns)})
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


@contextmanager
def running(*hubs: Hub) -> Iterator[tuple[Hub, ...]]:
    """Start each hub (replicas of one site, say); every one is closed after the block."""
    try:
        for h in hubs:
            h.start()
        yield hubs
    finally:
        for h in hubs:
            h.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = Hub.create(tmp_path / "site")
    try:
        h.start()
        yield h
    finally:
        h.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[TempPostgres]:
    """A PostgreSQL server of the test session (Debian's postgresql; .ci/run installs it, CI requires it)."""
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("PICOCTL_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL server programs not found (apt-get install postgresql)")
        pytest.skip("PostgreSQL server programs not installed (apt-get install postgresql)")
    server = TempPostgres(bindir)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(postgres: TempPostgres) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files hub.crt and hub.key in `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "picoctl-hub")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "hub.crt", folder / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
