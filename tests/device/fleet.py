"""The real hub for device tests: a site made by `picoctl init`, uvicorn on 127.0.0.1, and the operator
steps a test needs (register a board, publish a picow release, start a rollout, read the history)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from picoctl import config, release, signing
from picoctl.client import HubClient
from picoctl.commands.init import init_site
from picoctl.hub.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_app(version: str, extra: dict[str, bytes] | None = None, main_prefix: bytes = b"") -> dict[str, bytes]:
    """An app in the shape of the sample one: announces its version, then runs the agent's loop."""
    main = main_prefix + (
        b"import ver\nfrom ota import agent, hw\nhw.step('app ' + ver.V)\nprint('@app', ver.V)\n"
        b"class App:\n    def step(self):\n        pass\n    def readings(self):\n        return {'v': ver.V}\n"
        b"    def stop(self):\n        pass\nagent.run(App())\n")
    files = {"main.py": main, "ver.py": f"V = {version!r}\n".encode()}
    files.update(extra or {})
    return files


class Site:
    """A running hub and an operator client for it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        path = init_site(root / "site")
        self.cfg = config.load(path)
        self.cfg.rollout.trial_timeout_s = 60
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.cfg), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "hub did not start"
            time.sleep(0.02)
        self.client = HubClient(self.url, self.cfg.read_token())
        self._key = signing.load_private_key(path.parent / "keys" / "release.key")

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def register(self, device_id: str) -> str:
        return self.client.register_device(device_id, "picow", "canary")["key"]

    def publish(self, version: str, app: dict[str, bytes]) -> dict:
        src = self.root / "src" / version
        for name, data in app.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes(data)
        out = self.root / "releases" / version
        meta = release.build("picow", version, src, out, key_hex=self._key)
        self.client.publish(out)
        return meta

    def rollout(self, version: str, halt_after_failures: int = 1000) -> int:
        stage = {"name": "canary", "ids": [], "device_type": None, "percent": None, "channel": "canary"}
        return self.client.start_rollout("picow", version, [stage], halt_after_failures, 0)["id"]

    def phases(self, device_id: str) -> list[str]:
        """The deploy phases the hub recorded for a device, oldest first."""
        events = self.client.history(device=device_id, kind="deploy_status", limit=1000)
        return [e["result"] for e in events]

    def device(self, device_id: str) -> dict:
        return self.client.device(device_id)
