"""A hub on 127.0.0.1: `picoctl serve` as a child process, with the operator steps around it.

Used by the tests (the `hub` fixture), `picoctl demo` and the benchmarks.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from .. import config, release
from ..client import HubClient
from ..site import init_site

START_TIMEOUT_S = 20.0


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this process has not
    handed out before: one handed out may not be bound yet (the demo picks its Pi app's port before
    its hub, whose port is already chosen, starts)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


@dataclass
class LocalHub:
    """A hub process and what a test, a benchmark or the demo needs to drive it."""

    site: Path
    port: int
    cfg: config.FleetConfig
    token: str
    signing_key: str
    client: HubClient
    proc: subprocess.Popen | None = None
    starts: int = 0
    file_size_limit: int | None = None  # RLIMIT_FSIZE for the hub: writes past it fail as on a full disk
    log_name: str = "hub.log"
    _log: Any = field(default=None, repr=False)

    @classmethod
    def create(cls, site: Path, port: int | None = None, **hub_settings: Any) -> LocalHub:
        """A new site (`picoctl init`) for a hub on 127.0.0.1:`port` (a free one by default); not started.

        `hub_settings` go into fleet.toml's [hub] (database_url, artifact_base_url, …).
        """
        port = port or free_port()
        path = init_site(site, port)
        if hub_settings:
            cfg = config.load(path)
            for key, value in hub_settings.items():
                setattr(cfg.hub, key, value)
            config.save(cfg, path)
        cfg = config.load(path)
        token = cfg.read_token()
        return cls(site=site, port=port, cfg=cfg, token=token,
                   signing_key=(site / "keys" / "release.key").read_text().strip(),
                   client=HubClient(f"http://127.0.0.1:{port}", token))

    def set_webhook_secret(self, secret: str) -> None:
        """Give the site a webhook secret (its file, named in fleet.toml); taken at the next start."""
        (self.site / "webhook.secret").write_text(secret + "\n")
        self.cfg.hub.webhook_secret_file = "webhook.secret"
        config.save(self.cfg, self.site / "fleet.toml")

    @property
    def keys(self) -> dict[str, Any]:
        """The site's release key set, as boards provisioned for it trust it."""
        from ..provision import site_keys

        return site_keys(self.cfg)

    @property
    def auth(self) -> dict[str, str]:
        """The operator's Authorization header, for a request made by hand."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def url(self) -> str:
        return f"{'https' if self.cfg.hub.tls_cert else 'http'}://127.0.0.1:{self.port}"

    def replica(self) -> LocalHub:
        """Another hub of the same site (fleet.toml, token, data folder) on its own port; not started.

        With hub.database_url both serve one database, as replicas behind a load balancer do.
        """
        port = free_port()
        return replace(self, port=port, client=HubClient(f"http://127.0.0.1:{port}", self.token), proc=None,
                       starts=0, log_name=f"hub-{port}.log", _log=None)

    @property
    def log_path(self) -> Path:
        return self.site / self.log_name

    def start(self) -> None:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "picoctl", "--config", str(self.site / "fleet.toml"), "serve",
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONUNBUFFERED": "1"},
            preexec_fn=self._limits,
        )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0, verify=False).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"hub did not answer /healthz in {START_TIMEOUT_S}s:\n{self.log_path.read_text()[-3000:]}")

    def _limits(self) -> None:
        if self.file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_size_limit, self.file_size_limit))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the hub process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Kill the hub and close the operator client."""
        self.kill()
        self.client.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def register(self, device_id: str, type: str = "picow", channel: str = "stable") -> str:  # noqa: A002
        """Register a device; its key (hex)."""
        return self.client.register_device(device_id, type, channel)["key"]

    def build_release(self, version: str, files: dict[str, bytes], target: str = "picow") -> Path:
        """A signed release folder of `files` (needs main.py) under the site."""
        src = self.site / "src" / f"{target}-{version}"
        for name, data in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        out = self.site / "releases" / f"{target}-{version}"
        release.build(target, version, src, out, key_hex=self.signing_key)
        return out

    def publish(self, release_dir: Path) -> dict[str, Any]:
        return self.client.publish(release_dir)
