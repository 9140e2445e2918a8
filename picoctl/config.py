"""fleet.toml: typed sections, loaded with tomllib and written with tomli_w.

Found through `--config`, then `$PICOCTL_CONFIG`, then `~/.config/picoctl/fleet.toml`, then
`/etc/picoctl/fleet.toml`. Every error is one line naming the file, the key and what was expected.
Relative paths are resolved against the folder holding the file.
"""

from __future__ import annotations

import os
import tomllib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from .errors import BadInput
from .protocol import CHANNELS, HEX64

ENV_VAR = "PICOCTL_CONFIG"
SEARCH_PATH = (Path("~/.config/picoctl/fleet.toml"), Path("/etc/picoctl/fleet.toml"))
DEFAULT_PORT = 8470


@dataclass
class HubConfig:
    listen: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    public_url: str = f"http://localhost:{DEFAULT_PORT}"
    data_dir: str = "data"
    token_file: str = "operator.token"
    tls_cert: str = ""
    tls_key: str = ""
    webhook_secret_file: str = ""
    max_device_body: int = 16384
    body_timeout_s: float = 10.0
    answer_timeout_s: float = 10.0  # the CLI's and the TUI's wait for one answer of the hub, in all (picoctl.client)
    heartbeat_history: int = 500
    database_url: str = ""  # postgresql://… for several replicas on one database; empty: SQLite in data_dir
    artifact_base_url: str = ""  # offers point at <this>/<sha256>; empty: the hub serves /artifacts itself


@dataclass
class ReleaseConfig:
    public_key: str = ""  # a single release key, for a site without keys_file
    keys_file: str = ""  # the signed release key set (keyset.py); it supersedes public_key
    signing_key_file: str = ""
    import_urls: str = ""  # meta.json URLs `picoctl release import` (and its timer) fetches, space-separated


@dataclass
class PiConfig:
    root: str = "/opt/pi-sensors"
    app_name: str = "pi-sensors"
    restart_command: str = "sudo systemctl restart pi-sensors.service"
    health_url: str = "http://localhost:5000/healthz"
    health_timeout_s: float = 30.0
    health_interval_s: float = 1.0
    keep_releases: int = 3
    smoke_command: str = ""
    command_timeout_s: float = 60.0
    update_url: str = ""
    channel: str = "stable"
    max_archive_bytes: int = 512 * 1024 * 1024


@dataclass
class FetchConfig:
    """The bound of every fetch picoctl makes (picoctl.fetch_bounds): floor_s plus the size at min_rate."""

    floor_s: float = 30.0
    min_rate: int = 32 * 1024  # bytes per second: a 512 MiB artifact may take 4.6 hours


@dataclass
class DeviceTypeConfig:
    heartbeat_interval_s: int = 60
    check_interval_s: int = 300
    stale_after_s: int = 0  # 0: three heartbeat intervals
    offline_after_s: int = 0  # 0: ten heartbeat intervals

    def stale_after(self) -> int:
        return self.stale_after_s or 3 * self.heartbeat_interval_s

    def offline_after(self) -> int:
        return self.offline_after_s or 10 * self.heartbeat_interval_s


MAX_RETRY_BACKOFF_S = 86400  # a day: with its doublings (rollout.MAX_BACKOFF_DOUBLINGS) a retry waits 1024 days at most


@dataclass
class RolloutConfig:
    stages: str = "canary,10%,50%,100%"
    halt_after_failures: int = 1
    promote_after_successes: int = 0
    trial_timeout_s: int = 900
    retry_backoff_s: int = 60  # 0 to MAX_RETRY_BACKOFF_S
    require_smoke: bool = False  # picow rollouts only of releases with a passing smoke attestation


@dataclass
class UsbConfig:
    drive_roots: str = "/media:/run/media:/mnt"  # where BOOTSEL drives get mounted, ':'-separated
    extra_ports: str = ""  # more serial ports to treat as boards (glob patterns, ':'-separated)
    poll_s: float = 0.5


def _default_device_types() -> dict[str, DeviceTypeConfig]:
    return {"picow": DeviceTypeConfig(), "pico": DeviceTypeConfig(heartbeat_interval_s=10, check_interval_s=0)}


@dataclass
class FleetConfig:
    hub: HubConfig = field(default_factory=HubConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    pi: PiConfig = field(default_factory=PiConfig)
    device_types: dict[str, DeviceTypeConfig] = field(default_factory=_default_device_types)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    usb: UsbConfig = field(default_factory=UsbConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    path: Path | None = None

    def resolve(self, value: str) -> Path:
        """A path from the file, made absolute against the file's folder."""
        p = Path(value).expanduser()
        if not p.is_absolute() and self.path is not None:
            p = self.path.parent / p
        return p

    @property
    def data_dir(self) -> Path:
        return self.resolve(self.hub.data_dir)

    @property
    def token_file(self) -> Path:
        return self.resolve(self.hub.token_file)

    @property
    def hub_url(self) -> str:
        """Where the CLI and TUI reach the hub: $PICOCTL_HUB_URL, else hub.public_url."""
        return os.environ.get("PICOCTL_HUB_URL", self.hub.public_url).rstrip("/")

    def device_type(self, name: str) -> DeviceTypeConfig:
        return self.device_types.get(name, DeviceTypeConfig())

    def read_token(self) -> str:
        try:
            return self.token_file.read_text().strip()
        except OSError as exc:
            raise BadInput(f"{self.token_file}: cannot read operator token: {exc.strerror}") from None


_SECTIONS: dict[str, type] = {"hub": HubConfig, "release": ReleaseConfig, "pi": PiConfig, "rollout": RolloutConfig,
                             "usb": UsbConfig, "fetch": FetchConfig}


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(t, str(t))


def _load_section(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise BadInput(f"{where}: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise BadInput(f"{where}.{key}: unknown key (expected one of {', '.join(sorted(known))})")
        expected = hints[key]
        ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise BadInput(f"{where}.{key}: expected {_type_name(expected)}, got {type(value).__name__} {value!r}")
        values[key] = value
    return cls(**values)


def parse(data: dict[str, Any], path: Path | None = None) -> FleetConfig:
    """Build a FleetConfig from parsed TOML, naming the file and key of the first error."""
    name = str(path) if path else "fleet.toml"
    cfg = FleetConfig(path=path.resolve() if path else None)
    for key, value in data.items():
        if key in _SECTIONS:
            setattr(cfg, key, _load_section(_SECTIONS[key], value, f"{name}: {key}"))
        elif key == "device_types":
            if not isinstance(value, dict):
                raise BadInput(f"{name}: device_types: expected a table of device types")
            cfg.device_types = {
                t: _load_section(DeviceTypeConfig, v, f"{name}: device_types.{t}") for t, v in value.items()
            }
        else:
            raise BadInput(f"{name}: {key}: unknown section (expected one of hub, release, pi, device_types, rollout, usb, fetch)")
    _validate(cfg, name)
    return cfg


def _validate(cfg: FleetConfig, name: str) -> None:
    if not 0 < cfg.hub.port < 65536:
        raise BadInput(f"{name}: hub.port: expected 1-65535, got {cfg.hub.port}")
    if cfg.hub.database_url and not cfg.hub.database_url.startswith(("postgresql://", "postgres://")):
        raise BadInput(f"{name}: hub.database_url: expected a postgresql:// URL or nothing (SQLite in data_dir)")
    if cfg.hub.artifact_base_url and not cfg.hub.artifact_base_url.startswith(("http://", "https://")):
        raise BadInput(f"{name}: hub.artifact_base_url: expected an http:// or https:// URL or nothing")
    if cfg.pi.keep_releases < 2:
        raise BadInput(f"{name}: pi.keep_releases: expected at least 2 (current and previous), got {cfg.pi.keep_releases}")
    if cfg.pi.channel not in CHANNELS:
        raise BadInput(f"{name}: pi.channel: expected one of {', '.join(CHANNELS)}, got {cfg.pi.channel!r}")
    key = cfg.release.public_key
    if key and not HEX64.fullmatch(key.lower()):
        raise BadInput(f"{name}: release.public_key: expected 64 hex digits (an Ed25519 public key)")
    if not cfg.hub.answer_timeout_s > 0:
        raise BadInput(f"{name}: hub.answer_timeout_s: expected a positive number of seconds")
    if not cfg.fetch.floor_s > 0 or not cfg.fetch.min_rate > 0:
        raise BadInput(f"{name}: fetch.floor_s and fetch.min_rate: expected positive numbers")
    if not 0 <= cfg.rollout.retry_backoff_s <= MAX_RETRY_BACKOFF_S:
        raise BadInput(f"{name}: rollout.retry_backoff_s: expected 0 (retry at the next check) to "
                       f"{MAX_RETRY_BACKOFF_S} seconds, got {cfg.rollout.retry_backoff_s}")
    for t, dt in cfg.device_types.items():
        if dt.heartbeat_interval_s <= 0:
            raise BadInput(f"{name}: device_types.{t}.heartbeat_interval_s: expected a positive integer")


def find(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use, by the documented search order."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(ENV_VAR):
        return Path(env)
    for candidate in SEARCH_PATH:
        p = candidate.expanduser()
        if p.exists():
            return p
    raise BadInput(
        f"no fleet.toml found (looked at --config, ${ENV_VAR}, {', '.join(map(str, SEARCH_PATH))}); "
        "create one with `picoctl init`"
    )


def load(explicit: str | os.PathLike[str] | None = None) -> FleetConfig:
    path = find(explicit)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: config file does not exist; create one with `picoctl init`") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid TOML: {exc}") from None
    return parse(data, path)


def to_toml(cfg: FleetConfig) -> str:
    data = asdict(cfg)
    data.pop("path")
    return tomli_w.dumps(data)


def save(cfg: FleetConfig, path: Path) -> None:
    """Write atomically (temp file + rename)."""
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(to_toml(cfg))
    os.replace(tmp, path)
