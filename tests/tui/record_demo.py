"""Record the demo session the snapshots and screenshots render: `python tests/tui/record_demo.py`.

A real hub on 127.0.0.1 with ten simulated Pico W (the device protocol, signed) and two USB Picos
(heartbeats relayed as picoctl does), releases for three targets, a canary rollout in progress with a
committed, a silent and a retrying device, one device gone stale and one offline; the Pi side from
a real deploy of the example app (two releases, health checked); the USB side from a real scan of a
virtual BOOTSEL drive and a virtual Pico, with its serial log. Writes tests/tui/data/demo.json:
every operator API list, each device's detail, the Pi status, the boards, the clock at the end.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from picoctl import config, pideploy, release, shipped  # noqa: E402
from picoctl.sim import pi_app_control  # noqa: E402
from picoctl.sim.bootsel_drive import VirtualDrive  # noqa: E402
from picoctl.sim.fleet import SimDevice  # noqa: E402
from picoctl.sim.local_hub import LocalHub, free_port  # noqa: E402
from picoctl.sim.virtual_pico import VirtualPico  # noqa: E402
from picoctl.usb import detect  # noqa: E402
from picoctl.usb.serial_log import SerialLog  # noqa: E402

OUT = REPO / "tests" / "tui" / "data" / "demo.json"
STALE_S, OFFLINE_S = 6, 15  # the recording's picow thresholds (fleet.toml device_types), so it takes seconds
BEATS = 40


class DemoDevice(SimDevice):
    """A simulated Pico W whose signal, memory and moisture move like a real one's."""

    def heartbeat_request(self) -> tuple[int, bytes, dict[str, str]]:
        k = self.n
        phase = int(self.id[-2:]) if self.id[-2:].isdigit() else 0
        self.readings = {"moisture": round(35 + 12 * math.sin((k + phase * 3) / 6) - (k % 13) * 0.4, 1),
                         "pump": (k + phase) % 13 == 0}
        counter = self.counter()
        self.uptime_s += 60
        body = {"id": self.id, "counter": counter, "version": self.version, "seq": self.seq,
                "uptime_s": self.uptime_s, "mem_free": 98000 + (k * 1543 + phase * 777) % 9000 - phase * 900,
                "rssi": -48 - phase * 3 - (k * 7 + phase) % 6, "phase": self.phase or None, "readings": self.readings}
        raw, headers = self.signed({key: v for key, v in body.items() if v is not None})
        return counter, raw, headers


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="picoctl-demo-"))
    hub = LocalHub.create(tmp / "site")
    cfg = hub.cfg
    cfg.device_types["picow"] = config.DeviceTypeConfig(heartbeat_interval_s=2, stale_after_s=STALE_S,
                                                        offline_after_s=OFFLINE_S)
    cfg.device_types["pico"] = config.DeviceTypeConfig(heartbeat_interval_s=2, stale_after_s=STALE_S,
                                                       offline_after_s=OFFLINE_S)
    config.save(cfg, hub.site / "fleet.toml")
    hub.start()
    os.environ["PICOCTL_HUB_URL"] = hub.url
    pidfile = tmp / "app.pid"
    try:
        for target, version, files in (("picow", "1.0.0", {"main.py": b"print('1.0.0')\n"}),
                                       ("picow", "1.1.0", {"main.py": b"print('1.1.0')\n", "pump.py": b"ON = 1\n"}),
                                       ("pico", "0.9.2", {"main.py": (REPO / "device_code/pico/main.py").read_bytes()})):
            hub.publish(hub.build_release(version, files, target))
        sims = {}
        for i in range(1, 11):
            did = f"gh-{i:02d}"
            sims[did] = DemoDevice(did, hub.register(did, "picow", "canary" if i <= 3 else "stable"),
                                   silent_after_switch=(did == "gh-02"), transient_failures=(9 if did == "gh-03" else 0))
        for j in (1, 2):
            hub.register(f"bench-{j}", "pico", "stable")
        with httpx.Client(base_url=hub.url, timeout=10) as c:
            for k in range(BEATS):
                for did, sim in sims.items():
                    if did != "gh-08" or k < BEATS - 5:
                        sim.heartbeat(c)
                for j in (1, 2):
                    hub.client.relay_heartbeat(f"bench-{j}", {"version": "0.9.2", "uptime_s": 600 + k * 10,
                                                               "mem_free": 180000 - j * 4000 - k * 10,
                                                               "readings": {"temp_c": round(24 + j + k / 40, 1)}})
            rollout = hub.client.start_rollout("picow", "1.1.0", [
                {"name": "canary", "ids": [], "device_type": None, "percent": None, "channel": "canary"},
                {"name": "10%", "ids": [], "device_type": None, "percent": 10.0, "channel": None},
                {"name": "50%", "ids": [], "device_type": None, "percent": 50.0, "channel": None},
                {"name": "100%", "ids": [], "device_type": None, "percent": 100.0, "channel": None}], 2, 3)
            for did in ("gh-01", "gh-02", "gh-03"):
                sims[did].step(c)
            time.sleep(OFFLINE_S - 2)  # gh-08 (quiet since its 35th heartbeat) and gh-02 (silent) go offline
            for did, sim in sims.items():
                if did not in ("gh-02", "gh-08"):
                    sim.heartbeat(c)
            time.sleep(STALE_S + 2)  # gh-07 misses the last round: stale
            for did, sim in sims.items():
                if did not in ("gh-02", "gh-07", "gh-08"):
                    sim.heartbeat(c)
            for j in (1, 2):
                hub.client.relay_heartbeat(f"bench-{j}", {"version": "0.9.2", "uptime_s": 1100, "mem_free": 170000,
                                                           "readings": {"temp_c": 25.5 + j}})

        pi = record_pi(cfg, tmp, hub, pidfile)
        usb, serial = record_usb(cfg, tmp)
        assert any(r["id"] == rollout["id"] for r in hub.client.rollouts())
        write(OUT, hub, cfg, pi, usb, serial)
    finally:
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        hub.close()
        shutil.rmtree(tmp, ignore_errors=True)


def write(out: Path, hub: LocalHub, cfg: config.FleetConfig, pi: dict[str, Any], usb: list[dict[str, Any]],
          serial: dict[str, list[str]]) -> None:
    """The session as the TUI reads it now (tui.source.Recording), with this run's ports as on a Pi."""
    app_port = urllib.parse.urlsplit(cfg.pi.health_url).port
    data = {
        "clock": round(time.time(), 3), "hub_url": "http://127.0.0.1:8470",
        "device_types": {t: {"heartbeat_interval_s": d.heartbeat_interval_s, "stale_after_s": d.stale_after_s,
                             "offline_after_s": d.offline_after_s} for t, d in cfg.device_types.items()
                         if t in ("picow", "pico")},
        "devices": hub.client.devices(),
        "device_details": {d["id"]: hub.client.device(d["id"]) for d in hub.client.devices()},
        "releases": hub.client.releases(), "rollouts": hub.client.rollouts(),
        "history": hub.client.history(limit=1000), "stream": [], "pi": pi, "usb": usb, "serial": serial,
    }
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    for local, shown in ((f"127.0.0.1:{app_port}", "localhost:5000"), (hub.url, "http://127.0.0.1:8470")):
        text = text.replace(local, shown)  # this run's random ports, as they would be on a Pi
    out.write_text(text)
    print(f"wrote {out}: {len(data['devices'])} devices, {len(data['history'])} events")


def pi_view(cfg: config.FleetConfig) -> dict[str, Any]:
    """The Pi status the Pi screen shows, its root as on a Pi."""
    s = pideploy.status(cfg)
    return {"root": "/opt/pi-sensors", "current": s.current, "previous": s.previous, "releases": s.releases,
            "healthy": s.healthy, "health": s.health, "busy": s.busy, "queued_events": s.queued_events}


def record_pi(cfg: config.FleetConfig, tmp: Path, hub: LocalHub, pidfile: Path) -> dict[str, Any]:
    """Deploy two releases of the example app for real, then take the status the Pi screen shows."""
    app_port = free_port()
    cfg.pi.root = str(tmp / "pi")
    cfg.pi.restart_command = shlex.join(pi_app_control.command(cfg.pi.root, app_port, pidfile))
    cfg.pi.health_url = f"http://127.0.0.1:{app_port}/healthz"
    cfg.pi.health_interval_s = 0.05
    for version in ("2.3.0", "2.4.0"):
        out = tmp / f"pi-{version}"
        release.build("pi", version, REPO / "examples" / "pi-app", out, key_hex=hub.signing_key)
        hub.publish(out)
        result = pideploy.deploy(cfg, str(out))
        assert result.ok, result.reason
    return pi_view(cfg)


def record_usb(cfg: config.FleetConfig, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """A virtual BOOTSEL drive and a virtual Pico, found by the real scan; the Pico's serial log."""
    (tmp / "media").mkdir()
    (tmp / "ports").mkdir()
    cfg.usb.drive_roots = str(tmp / "media")
    cfg.usb.extra_ports = str(tmp / "ports" / "pico-*")
    flash = tmp / "flash"
    flash.mkdir()
    shutil.copy(shipped.PICO_APP, flash / "main.py")
    (flash / "config.json").write_text(json.dumps({"id": "bench-1", "heartbeat_s": 0.2}))
    (flash / "version.json").write_text(json.dumps({"version": "0.9.2", "target": "pico"}))
    with VirtualDrive(tmp / "media" / "RPI-RP2"), VirtualPico(flash, link_dir=tmp / "ports") as pico:
        lines: list[str] = []
        with SerialLog(pico.port, on_line=lines.append):
            deadline = time.monotonic() + 10
            while sum('"heartbeat"' in x for x in lines) < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
        boards = [b.to_json() for b in detect.scan(cfg)]
        port = pico.port
    for b in boards:  # paths as they look on a Pi, not this machine's temporary folders
        b["path"] = "/dev/ttyACM0" if b["path"] == port else "/media/pi/RPI-RP2"
    return boards, {"/dev/ttyACM0": lines[-40:]}


if __name__ == "__main__":
    main()
