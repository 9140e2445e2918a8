"""Where the TUI's data comes from: the live hub (through picoctl.client) or a recording of one.

Both give the same JSON shapes, so the screens render recorded data through exactly the path they use
live; snapshot tests and `make screenshots` use a `Recording`, `picoctl` uses `Live`.
The Pi and USB sides are local to this machine: `Live` calls picoctl.pideploy and picoctl.usb (blocking:
the screens call them from thread workers), a `Recording` answers with what it holds.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Protocol

from ..config import FleetConfig
from ..errors import PicoctlError
from ..progress import Progress

StreamItem = tuple[int | None, str, Any]  # (event id, kind, data)
Json = dict[str, Any]


@dataclass
class PiView:
    """The Pi screen's facts, from pideploy.status or a recording."""

    root: str
    current: str | None
    previous: str | None
    releases: list[str]
    healthy: bool | None
    health: str
    busy: str = ""
    queued_events: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PiView:
        keys = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in keys})


@dataclass
class BoardView:
    """One attached board or BOOTSEL drive (picoctl.usb.detect.Board as JSON)."""

    kind: str
    path: str
    description: str
    serial_number: str | None = None
    family: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}:{self.serial_number or ''}"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BoardView:
        return cls(d["kind"], d["path"], d.get("description") or "", d.get("serial_number"), d.get("family"))


class Source(Protocol):
    """What the screens read and do: the hub's operator API (async) and this machine's Pi and USB (blocking,
    called from thread workers). A refusal is a PicoctlError naming what was refused."""

    url: str

    async def devices(self) -> list[Json]: ...
    async def device(self, device_id: str) -> Json: ...
    async def releases(self) -> list[Json]: ...
    async def rollouts(self) -> list[Json]: ...
    async def history(self, limit: int = 1000) -> list[Json]: ...
    def stream(self, last_id: int | None) -> AsyncIterator[StreamItem]: ...
    async def check_now(self, device_id: str) -> Json: ...
    async def set_channel(self, device_id: str, channel: str) -> Json: ...
    async def remove_device(self, device_id: str) -> Json: ...
    async def remove_release(self, target: str, version: str) -> Json: ...
    async def start_rollout(self, target: str, version: str, stages: list[Json], halt_after_failures: int,
                            promote_after_successes: int) -> Json: ...
    async def rollout_action(self, rollout_id: int, action: str, reason: str) -> Json: ...
    def smoke(self, version: str, readings_of: list[str]) -> Json: ...
    def pi_status(self) -> PiView: ...
    def pi_published(self) -> str: ...
    def pi_deploy(self, source: str, progress: Progress, log: Callable[[str], None]) -> Any: ...
    def pi_rollback(self, progress: Progress, log: Callable[[str], None]) -> Any: ...
    def usb_scan(self) -> list[BoardView]: ...
    def serial_lines(self, port: str) -> list[str]: ...
    def device_log_reader(self, device_id: str, device_type: str, on_line: Callable[[str], None],
                          on_status: Callable[[bool, str], None]) -> Any: ...
    def serial_reader(self, port: str, on_line: Callable[[str], None],
                      on_status: Callable[[bool, str], None]) -> Any: ...
    def usb_transfer(self, op: str, where: str, what: Any, progress: Progress) -> str: ...
    def usb_identity(self, port: str) -> tuple[str | None, str | None]: ...


class Recording:
    """A recorded hub session (tests/tui/data/*.json): lists, device details, stream events, Pi and USB."""

    def __init__(self, path: Path) -> None:
        self.data: dict[str, Any] = json.loads(Path(path).read_text())
        self.url = self.data.get("hub_url", "http://127.0.0.1:8470")
        self.clock_at: float = float(self.data["clock"])

    async def devices(self) -> list[dict[str, Any]]:
        return self.data["devices"]

    async def device(self, device_id: str) -> dict[str, Any]:
        detail = self.data.get("device_details", {}).get(device_id)
        if detail is None:
            return next(d for d in self.data["devices"] if d["id"] == device_id)
        return detail

    async def releases(self) -> list[dict[str, Any]]:
        return self.data["releases"]

    async def rollouts(self) -> list[dict[str, Any]]:
        return self.data["rollouts"]

    async def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        return self.data["history"][-limit:]

    async def stream(self, last_id: int | None) -> AsyncIterator[StreamItem]:
        for item in self.data.get("stream", []):
            yield item[0], item[1], item[2]
        await asyncio.Event().wait()  # a recording's stream stays open and quiet

    async def check_now(self, device_id: str) -> Json:
        raise _recorded()

    async def set_channel(self, device_id: str, channel: str) -> Json:
        raise _recorded()

    async def remove_device(self, device_id: str) -> Json:
        raise _recorded()

    async def remove_release(self, target: str, version: str) -> Json:
        raise _recorded()

    async def start_rollout(self, target: str, version: str, stages: list[Json], halt_after_failures: int,
                            promote_after_successes: int) -> Json:
        raise _recorded()

    async def rollout_action(self, rollout_id: int, action: str, reason: str) -> Json:
        raise _recorded()

    def smoke(self, version: str, readings_of: list[str]) -> Json:
        raise _recorded()

    def pi_status(self) -> PiView:
        return PiView.from_json(self.data["pi"])

    def pi_published(self) -> str:
        return ""

    def pi_deploy(self, source: str, progress: Progress, log: Callable[[str], None]) -> Any:
        raise PicoctlError("deploy: this is a recording; run picoctl on the Pi to deploy")

    def pi_rollback(self, progress: Progress, log: Callable[[str], None]) -> Any:
        raise PicoctlError("rollback: this is a recording; run picoctl on the Pi to roll back")

    def usb_scan(self) -> list[BoardView]:
        return [BoardView.from_json(b) for b in self.data.get("usb", [])]

    def serial_lines(self, port: str) -> list[str]:
        return list(self.data.get("serial", {}).get(port, []))

    def serial_reader(self, port: str, on_line: Callable[[str], None], on_status: Callable[[bool, str], None]) -> None:
        return None

    def device_log_reader(self, device_id: str, device_type: str, on_line: Callable[[str], None],
                          on_status: Callable[[bool, str], None]) -> None:
        return None  # a recording has no board to ask

    def usb_transfer(self, op: str, where: str, what: Any, progress: Progress) -> str:
        raise PicoctlError(f"{op}: this is a recording; attach a board and run picoctl")

    def usb_identity(self, port: str) -> tuple[str | None, str | None]:
        """What the recorded board's telemetry said it is: (version, device id)."""
        return telemetry_identity(self.serial_lines(port))


def telemetry_identity(lines: Iterable[str]) -> tuple[str | None, str | None]:
    """(version, device id) as the last of these console lines that names its board says (a USB Pico's
    JSON telemetry, device_code/pico/main.py), else (None, None)."""
    for line in reversed(list(lines)):
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict) and isinstance(said.get("id"), str):
            version = said.get("version")
            return (version if isinstance(version, str) else None), said["id"]
    return None, None


def _recorded() -> PicoctlError:
    return PicoctlError("this is a recording; start the hub to act on a fleet")


@dataclass
class Live:
    """The hub named by fleet.toml, through picoctl.client's AsyncHubClient, and this machine's Pi and USB."""

    cfg: FleetConfig
    client: Any = field(default=None)

    def __post_init__(self) -> None:
        from ..client import AsyncHubClient

        self.client = self.client or AsyncHubClient.from_config(self.cfg)
        self.url = self.client.url

    async def devices(self) -> list[dict[str, Any]]:
        return await self.client.devices()

    async def device(self, device_id: str) -> dict[str, Any]:
        return await self.client.device(device_id)

    async def releases(self) -> list[dict[str, Any]]:
        return await self.client.releases()

    async def rollouts(self) -> list[dict[str, Any]]:
        return await self.client.rollouts()

    async def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        return await self.client.history(limit=limit)

    async def stream(self, last_id: int | None) -> AsyncIterator[StreamItem]:
        async for ev in self.client.events(None if last_id is None else str(last_id)):
            yield (int(ev.id) if ev.id and ev.id.isdigit() else None), ev.event, ev.data

    async def check_now(self, device_id: str) -> Json:
        return await self.client.check_now(device_id)

    async def set_channel(self, device_id: str, channel: str) -> Json:
        return await self.client.set_channel(device_id, channel)

    async def remove_device(self, device_id: str) -> Json:
        return await self.client.remove_device(device_id)

    async def remove_release(self, target: str, version: str) -> Json:
        return await self.client.remove_release(target, version)

    async def start_rollout(self, target: str, version: str, stages: list[Json], halt_after_failures: int,
                            promote_after_successes: int) -> Json:
        return await self.client.start_rollout(target, version, stages, halt_after_failures, promote_after_successes)

    async def rollout_action(self, rollout_id: int, action: str, reason: str) -> Json:
        return await self.client.rollout_action(rollout_id, action, reason)

    def smoke(self, version: str, readings_of: list[str]) -> Json:
        """`picoctl release smoke` of picow `version` as the hub has it, with these devices' readings."""
        from .. import smoke
        from ..client import HubClient

        with HubClient.from_config(self.cfg) as client:
            return smoke.run_published(client, version, readings_of).as_dict()

    def pi_status(self) -> PiView:
        from .. import pideploy

        s = pideploy.status(self.cfg)
        return PiView(s.root, s.current, s.previous, list(s.releases), s.healthy, s.health, s.busy, s.queued_events)

    def pi_published(self) -> str:
        from .. import pideploy

        return pideploy.published_source(self.cfg)

    def pi_deploy(self, source: str, progress: Progress, log: Callable[[str], None]) -> Any:
        from .. import pideploy

        return pideploy.deploy(self.cfg, source, progress, log)

    def pi_rollback(self, progress: Progress, log: Callable[[str], None]) -> Any:
        from .. import pideploy

        return pideploy.rollback(self.cfg, None, progress, log)

    def usb_scan(self) -> list[BoardView]:
        from ..usb import detect

        return [BoardView.from_json(b.to_json()) for b in detect.scan(self.cfg)]

    def serial_lines(self, port: str) -> list[str]:
        return []

    def device_log_reader(self, device_id: str, device_type: str, on_line: Callable[[str], None],
                          on_status: Callable[[bool, str], None]) -> Any:
        """A Pico W's log over the air (picoctl.wireless_log), followed on a thread."""
        from ..wireless_log import Follower

        return Follower(self.cfg, device_id, device_type, on_line, on_status)

    def serial_reader(self, port: str, on_line: Callable[[str], None], on_status: Callable[[bool, str], None]) -> Any:
        """A SerialLog of `port` that also records the board's heartbeat lines in the hub, as `usb log` does."""
        from ..usb.serial_log import SerialLog
        from ..usb.telemetry import HeartbeatForwarder

        forward = HeartbeatForwarder(self.cfg)

        def line(text: str) -> None:
            on_line(text)
            forward(text)

        reader = SerialLog(port, on_line=line, on_status=on_status, who="the picoctl TUI's log view")
        weakref.finalize(reader, forward.close, 0)  # never blocks the screen on a slow hub
        return reader

    def usb_transfer(self, op: str, where: str, what: Any, progress: Progress) -> str:
        """Flash a UF2 (`what`: its path) onto a drive, push a release folder (`what`: the folder) or
        provision a Pico W (`what`: {"id", "ssid", "password"}) over a port; one line on success.

        Done and recorded by picoctl.operations, the path the CLI's commands take: the same event
        (actor, kind, device, detail) whichever face ran it; a refusal before the board was touched
        is not recorded.
        """
        from .. import operations

        if op == "flash":
            r = operations.flash_uf2(self.cfg, Path(what), Path(where), progress).result
            return f"flashed {r.bytes_written} bytes in {r.seconds:.1f} s; the board rebooted"
        if op == "push":
            p = operations.push(self.cfg, Path(what), where, progress).result
            return f"pushed {p.files} file(s); the board reports {p.version or 'no version'}"
        from .. import provision
        from ..client import HubClient, trust
        from ..usb import push

        def register(device_id: str, type_: str) -> str:
            with HubClient(self.client.url, self.cfg.read_token(), self.client.answer_s, trust(self.cfg)) as hub:
                return hub.register_device(device_id, type_)["key"]

        hub_url = self.cfg.hub.public_url
        done = operations.provision(self.cfg, what["id"], where, lambda: provision.provision(
            what["id"], hub_url, register, lambda files: push.push_files(where, files, progress), what.get("ssid", ""),
            what.get("password", ""), **provision.site_settings(self.cfg, hub_url))).result
        return f"provisioned {done.device_id} ({done.version}, {len(done.files)} files)"

    def usb_identity(self, port: str) -> tuple[str | None, str | None]:
        from ..usb import push

        return push.read_identity(port)
