"""Operator steps device tests need on the shared `hub` fixture (tests/conftest.py): publish a picow
release, start a rollout to the canary channel, read what the hub recorded."""

from __future__ import annotations

from typing import Any


def make_app(version: str, extra: dict[str, bytes] | None = None, main_prefix: bytes = b"") -> dict[str, bytes]:
    """An app in the shape of the sample one: announces its version, then runs the agent's loop."""
    main = main_prefix + (
        b"import ver\nfrom ota import agent, hw\nhw.step('app ' + ver.V)\nprint('@app', ver.V)\n"
        b"class App:\n    def step(self):\n        pass\n    def readings(self):\n        return {'v': ver.V}\n"
        b"    def stop(self):\n        pass\nagent.run(App())\n")
    files = {"main.py": main, "ver.py": f"V = {version!r}\n".encode()}
    files.update(extra or {})
    return files


def publish(hub: Any, version: str, app: dict[str, bytes]) -> dict[str, Any]:
    return hub.publish(hub.build_release(version, app))


def rollout(hub: Any, version: str, halt_after_failures: int = 1000) -> int:
    """Offer `version` to every canary-channel picow."""
    stage = {"name": "canary", "ids": [], "device_type": None, "percent": None, "channel": "canary"}
    return hub.client.start_rollout("picow", version, [stage], halt_after_failures, 0)["id"]


def status_events(hub: Any, device_id: str) -> list[dict[str, Any]]:
    return hub.client.history(device=device_id, kind="deploy_status", limit=1000)


def phases(hub: Any, device_id: str) -> list[str]:
    """The deploy phases the hub recorded for a device, oldest first (`failed (transient)` marked so)."""
    return [e["result"] for e in status_events(hub, device_id)]


def downloads(hub: Any, device_id: str) -> list[str]:
    """Files the agent downloaded (each download starts with a `<name> 0/<size>` report)."""
    return [e["detail"].split()[0] for e in status_events(hub, device_id)
            if e["result"] == "downloading" and " 0/" in e["detail"]]
