"""`picoctl demo`: the whole system on this machine, in a temporary folder that goes away afterwards.

A hub on 127.0.0.1; a fleet of Pico W, each the real device_code agent in the MicroPython unix port
when it is installed (else `SimDevice`, speaking the same protocol); a virtual USB Pico and a BOOTSEL
drive; the example Pi app deployed by pideploy and restarted like a systemd service would be.

The story it sets up: every board runs picow 1.0.0 and 1.1.0 is published, ready to canary. 1.1.0
soft-starts the pump through a PWM call its hardware module does not have; gh-03, whose sensor
reads dry air, starts its pump at boot and crashes, so its trial fails, it rolls back, and the rollout
halts. Pi release 2.4.0 waits beside the deployed 2.3.0 (the Pi screen offers it), a UF2 image waits
for the BOOTSEL drive and picow and pico releases for the USB board.
"""

from __future__ import annotations

import itertools
import math
import os
import shlex
import shutil
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from . import config, pideploy, provision, release, shipped
from .errors import BadInput, PicoctlError
from .sim import pi_app_control
from .sim.board import Board, RunResult, find_micropython
from .sim.bootsel_drive import VirtualDrive
from .sim.fleet import SimDevice
from .sim.local_hub import LocalHub, free_port
from .sim.virtual_pico import VirtualPico
from .usb import uf2
from .usb.follow import Follower

MAX_DEVICES = 50
HEARTBEAT_S, CHECK_S = 3, 4
STALE_S, OFFLINE_S = 10, 30
CANARIES = 3  # gh-01 … gh-03 are on the canary channel
DRY = "gh-03"  # its sensor reads dry air: 1.1.0 crashes on it
BOARD_LINES = 400  # console lines kept per board
SOFT_START = b'''# 1.1.0: soft-start the pump through PWM to spare the relay.
import hardware
_pump = hardware.pump


def pump(on):
    if on:
        hardware.pump_pwm(15, 0.3)  # a function this release forgot to ship in hardware.py
    _pump(on)


hardware.pump = pump
'''
Log = Callable[[str], None]


def moisture(device_id: str, now: float) -> float:
    """The demo's soil: slow waves between 36 and 58 %, each board in its own phase; dry air on DRY."""
    return 12.0 if device_id == DRY else 47 + 11 * math.sin(now / 90 + int(device_id[-2:]) * 1.7)


@dataclass
class Demo:
    """Everything the demo runs, started by `start()` and gone after `stop()` (also as a context manager)."""

    devices: int = 8
    real_boards: bool | None = None  # None: the MicroPython agent when the unix port is installed
    log: Log = print
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="picoctl-demo-")))
    hub: LocalHub | None = None
    cfg: config.FleetConfig | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _usb: ExitStack = field(default_factory=ExitStack)
    _saved_hub_url: str | None = None

    def __enter__(self) -> Demo:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def config_path(self) -> Path:
        return self.root / "site" / "fleet.toml"

    @property
    def pi_pidfile(self) -> Path:
        return self.root / "pi-app.pid"

    def start(self) -> config.FleetConfig:
        """Set everything up and start it; returns the demo's fleet configuration (at `config_path`)."""
        if self.real_boards is None:
            self.real_boards = find_micropython() is not None
        if not 1 <= self.devices <= MAX_DEVICES:
            raise BadInput(f"--devices: expected 1-{MAX_DEVICES}, got {self.devices}")
        self.root.mkdir(parents=True, exist_ok=True)
        self.log(f"demo folder {self.root}")
        hub = self.hub = LocalHub.create(self.root / "site")
        cfg = self.cfg = self._configure(hub.cfg)
        hub.cfg = cfg
        hub.start()
        self._saved_hub_url = os.environ.get("PICOCTL_HUB_URL")
        os.environ["PICOCTL_HUB_URL"] = hub.url  # this demo's hub, whatever the caller's environment says
        self.log(f"hub on {hub.url}")
        self._publish(hub)
        self._start_fleet(hub)
        self._deploy_pi(cfg, hub)
        self._start_usb(cfg, hub)
        return cfg

    def _configure(self, cfg: config.FleetConfig) -> config.FleetConfig:
        """Short intervals so that things happen within seconds; the Pi app and USB inside the folder."""
        for t in ("picow", "pico"):
            cfg.device_types[t] = config.DeviceTypeConfig(heartbeat_interval_s=HEARTBEAT_S, check_interval_s=CHECK_S,
                                                          stale_after_s=STALE_S, offline_after_s=OFFLINE_S)
        cfg.rollout.trial_timeout_s = 120
        cfg.rollout.retry_backoff_s = 5
        app_port = free_port()
        cfg.pi.root = str(self.root / "pi")
        cfg.pi.restart_command = shlex.join(pi_app_control.command(
            cfg.pi.root, app_port, self.pi_pidfile, self.root / "pi-app.log"))
        cfg.pi.health_url = f"http://127.0.0.1:{app_port}/healthz"
        cfg.pi.health_timeout_s = 30.0  # a loaded or small machine starts Python slowly
        cfg.pi.health_interval_s = 0.2
        cfg.pi.update_url = str(self.root / "site" / "releases" / "pi-2.4.0" / "meta.json")
        for sub in ("media", "ports"):
            (self.root / sub).mkdir()
        cfg.usb.drive_roots = str(self.root / "media")
        cfg.usb.extra_ports = str(self.root / "ports" / "pico-*")
        config.save(cfg, self.config_path)
        return config.load(self.config_path)

    def _publish(self, hub: LocalHub) -> None:
        app = {f.name: f.path.read_bytes() for f in release.iter_source(provision.DEVICE_CODE / "app")}
        hub.publish(hub.build_release("1.0.0", app, "picow"))
        hub.publish(hub.build_release("1.1.0", {**app, "main.py": SOFT_START + b"\n" + app["main.py"]}, "picow"))
        pico = {"main.py": shipped.PICO_APP.read_bytes()}
        hub.publish(hub.build_release("1.0.0", pico, "pico"))
        for version, rollout in (("2.3.0", "stable"), ("2.4.0", "stable")):
            out = hub.site / "releases" / f"pi-{version}"
            release.build("pi", version, shipped.EXAMPLES / "pi-app", out, key_hex=hub.signing_key,
                          rollout=rollout)
            hub.publish(out)
        firmware = self.root / "firmware"
        firmware.mkdir()
        image = bytes(itertools.islice(itertools.cycle(b"picoctl demo firmware "), 64 * 1024))
        (firmware / "blink-rp2040.uf2").write_bytes(uf2.build_uf2(image, 0x10000000, "rp2040"))
        self.log("published picow 1.0.0 and 1.1.0, pico 1.0.0, pi 2.3.0 and 2.4.0")

    # --- the Pico W fleet ---------------------------------------------------------------------------

    def _start_fleet(self, hub: LocalHub) -> None:
        ids = [f"gh-{i:02d}" for i in range(1, self.devices + 1)]
        keys = {did: hub.register(did, "picow", "canary" if i < CANARIES else "stable") for i, did in enumerate(ids)}
        if self.real_boards:
            version, app = provision.app_files(hub.site / "releases" / "picow-1.0.0")
            boards = {did: Board(self.root / "boards" / did) for did in ids}
            for did, board in boards.items():
                board.install(provision.device_config(
                    did, keys[did], hub.url, heartbeat_s=HEARTBEAT_S, check_s=CHECK_S, jitter=0.2,
                    trial_deadline_s=30, wifi_timeout_s=1, tick_ms=250), app, version, keys=hub.keys)
                board.set_moisture(moisture(did, time.time()))
                self._spawn(f"board {did}", self._power, board)
            self._spawn("weather", self._weather, boards)
            self.log(f"{len(ids)} Pico W running the MicroPython agent")
        else:
            for did in ids:
                self._spawn(f"sim {did}", self._simulate, SimDevice(did, keys[did], fail_trial=(did == DRY)), hub.url)
            self.log(f"{len(ids)} simulated Pico W (MicroPython unix port not installed)")

    def _spawn(self, name: str, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _power(self, board: Board) -> None:
        """Keep a board powered: through its resets and, should it halt, by powering it again."""

        def until(res: RunResult) -> bool:
            del res.lines[:-BOARD_LINES]
            return self._stop.is_set()

        while not self._stop.is_set():
            try:
                board.run(until, timeout=math.inf, max_boots=1 << 30)
            except AssertionError as exc:  # it halted: a person would power-cycle it
                (board.root / "halted.log").write_text(str(exc))
                self._stop.wait(CHECK_S)

    def _weather(self, boards: dict[str, Board]) -> None:
        """Each board's moisture sensor follows `moisture`."""
        while True:
            now = time.time()
            for did, board in boards.items():
                board.set_moisture(moisture(did, now))
            if self._stop.wait(2):
                return

    def _simulate(self, sim: SimDevice, url: str) -> None:
        """A SimDevice's agent loop: heartbeat, check, update, every check interval."""
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self._stop.is_set():
                sim.readings = {"moisture": round(moisture(sim.id, time.time()), 1), "pump": sim.id == DRY}
                try:
                    sim.step(client)
                except (httpx.HTTPError, PicoctlError):
                    pass  # the hub is away: try again next round, as a board would
                self._stop.wait(CHECK_S)

    # --- the Pi and USB -----------------------------------------------------------------------------

    def _deploy_pi(self, cfg: config.FleetConfig, hub: LocalHub) -> None:
        result = pideploy.deploy(cfg, str(hub.site / "releases" / "pi-2.3.0"), log=lambda line: None)
        if not result.ok:
            raise PicoctlError(f"the example Pi app did not deploy: {result.reason}")
        self.log(f"Pi app 2.3.0 deployed and healthy at {cfg.pi.health_url}")

    def _start_usb(self, cfg: config.FleetConfig, hub: LocalHub) -> None:
        hub.register("bench-1", "pico", "stable")
        flash = self.root / "usb-pico"
        flash.mkdir()
        shutil.copy(shipped.PICO_APP, flash / "main.py")
        (flash / "config.json").write_text('{"id": "bench-1", "heartbeat_s": 3, "sample_s": 1}\n')
        (flash / "version.json").write_text('{"version": "0.9.2", "target": "pico"}\n')
        drive = VirtualDrive(self.root / "media" / "RPI-RP2")
        self._usb.enter_context(drive)
        if find_micropython() is not None:
            pico = self._usb.enter_context(VirtualPico(flash, link_dir=self.root / "ports"))
            self._usb.enter_context(Follower(cfg))  # as the picoctl-usb-follow service would
            self.log(f"USB: a Pico on {pico.port} (its heartbeats followed), a BOOTSEL drive at {drive.path}")
        else:
            self.log(f"USB: a BOOTSEL drive at {drive.path} (no virtual Pico without the MicroPython unix port)")

    def stop(self) -> None:
        """Stop everything started and remove the folder; safe to call more than once."""
        self._stop.set()
        self._usb.close()
        for t in self._threads:
            t.join(timeout=15)
        self._threads.clear()
        pi_app_control.stop(self.pi_pidfile)
        if self.hub is not None:
            self.hub.close()
            self.hub = None
            if self._saved_hub_url is None:
                os.environ.pop("PICOCTL_HUB_URL", None)
            else:
                os.environ["PICOCTL_HUB_URL"] = self._saved_hub_url
        shutil.rmtree(self.root, ignore_errors=True)
