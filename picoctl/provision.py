"""Provision a Pico W: a device key registered with the hub, config.json, boot.py, the OTA agent,
the release key set it trusts (ota/trust.json) and the current app, written into a folder or pushed
to the board over USB.

The agent's modules go as `.mpy` (mpy-cross): a board then loads bytecode instead of compiling the
sources, which needs far more RAM than the Pico W can spare. boot.py and the app's main.py stay source,
as MicroPython runs those two only as `.py`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import keyset, release, shipped
from .config import DeviceTypeConfig, FleetConfig
from .errors import BadInput
from .progress import Progress
from .protocol import DEVICE_ID_RULE, HEX64, is_device_id

DEVICE_CODE = shipped.DEVICE_CODE / "picow"
FACTORY_VERSION = "0.0.0"
HUB_CERT = "hub.der"  # the hub's TLS certificate on a board that reaches it over https
TRUST = "ota/trust.json"  # the key set the board trusts and its downgrade floor (ota/trust.py)
DEFAULT_SETTINGS: dict[str, Any] = {  # the intervals are a device type's defaults (fleet.toml's [device_types.picow])
    "heartbeat_s": DeviceTypeConfig.heartbeat_interval_s, "check_s": DeviceTypeConfig.check_interval_s,
    "jitter": 0.1, "trial_deadline_s": 120, "trial_boots": 3,
    "wdt_ms": 8000, "download_retries": 5, "wifi_timeout_s": 15, "tick_ms": 1000,
}


@dataclass(frozen=True)
class Provisioned:
    device_id: str
    version: str
    files: dict[str, bytes]


def check_device_id(device_id: str) -> str:
    if not is_device_id(device_id):
        raise BadInput(f"device id {device_id!r} must be {DEVICE_ID_RULE}")
    return device_id


def _compile(files: dict[str, bytes], mpy: bool) -> dict[str, bytes]:
    """Sources to `.mpy` where that saves RAM (every module but boot.py and main.py)."""
    if not mpy:
        return dict(files)
    from .mpy import compile_mpy

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="picoctl-mpy-") as tmp:
        for name, data in files.items():
            base = name.rsplit("/", 1)[-1]
            if not name.endswith(".py") or base in release.KEEP_AS_SOURCE:
                out[name] = data
                continue
            src = Path(tmp) / "src" / name
            dst = Path(tmp) / "out" / (name[:-3] + ".mpy")
            src.parent.mkdir(parents=True, exist_ok=True)
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(data)
            compile_mpy(src, dst, name)
            out[name[:-3] + ".mpy"] = dst.read_bytes()
    return out


def agent_files(mpy: bool = True) -> dict[str, bytes]:
    """boot.py, recover.py (what boot.py runs around the app) and the ota/ package, as they go on a board."""
    files = {name: (DEVICE_CODE / name).read_bytes() for name in ("boot.py", "recover.py")}
    for p in sorted((DEVICE_CODE / "ota").glob("*.py")):
        files[f"ota/{p.name}"] = p.read_bytes()
    return _compile(files, mpy)


def app_files(release_dir: Path | None = None, mpy: bool = True,
              trusted: tuple[str, ...] | None = None) -> tuple[str, dict[str, bytes]]:
    """(version, files) of the app to install: a verified picow release (its signature too, given
    `trusted` release keys), else the bundled sample app."""
    if release_dir is None:
        src = DEVICE_CODE / "app"
        return FACTORY_VERSION, _compile({f.name: f.path.read_bytes() for f in release.iter_source(src)}, mpy)
    meta = release.verify(Path(release_dir), trusted)
    if meta["target"] != "picow" or meta.get("format") != "tar":
        raise BadInput(f"{release_dir}: not a picow release (target {meta['target']!r})")
    return meta["version"], release.read_tar_files(Path(release_dir) / meta["artifact"])


def device_config(device_id: str, key_hex: str, hub_url: str, wifi_ssid: str = "", wifi_password: str = "",
                  hub_cert: bytes | None = None, **settings: Any) -> dict[str, Any]:
    """The board's config.json: identity, hub, Wi-Fi and the agent's intervals. An https:// hub needs
    `hub_cert`, its certificate (DER), which the board pins: it goes to HUB_CERT, its sha256 here."""
    if not hub_url.startswith(("http://", "https://")):
        raise BadInput(f"hub URL {hub_url!r}: expected http:// or https://")
    secure = hub_url.startswith("https://")
    if secure and hub_cert is None:
        raise BadInput(f"hub URL {hub_url!r}: a board pins the hub's certificate; set hub.tls_cert in fleet.toml")
    if hub_cert is not None and not secure:
        raise BadInput(f"hub URL {hub_url!r}: a certificate to pin goes with an https:// hub URL")
    cfg: dict[str, Any] = {"id": check_device_id(device_id), "key": key_hex, "type": "picow",
                           "hub": hub_url.rstrip("/"), "wifi_ssid": wifi_ssid, "wifi_password": wifi_password}
    if hub_cert is not None:
        cfg.update(hub_cert=HUB_CERT, hub_fingerprint=hashlib.sha256(hub_cert).hexdigest())
    cfg.update(DEFAULT_SETTINGS)
    cfg.update(settings)
    return cfg


def hub_certificate(cfg: FleetConfig, hub_url: str) -> bytes | None:
    """The certificate boards pin when they reach the hub at `hub_url`: hub.tls_cert for https://, else None."""
    if not hub_url.startswith("https://") or not cfg.hub.tls_cert:
        return None
    from .hub.tls import certificate_der

    return certificate_der(cfg.resolve(cfg.hub.tls_cert))


def initial_state(version: str) -> dict[str, Any]:
    return {"version": version, "seq": 0, "phase": "committed"}


def trust_file(keys: dict[str, Any], floor: str = FACTORY_VERSION) -> bytes:
    """ota/trust.json: the key set envelope (checked as a first set) and the downgrade floor."""
    keyset.check_first(keys, "the key set for the board")
    release.check_version(floor)
    return json.dumps({"keys": keys, "floor": floor}).encode()


def site_keys(cfg: FleetConfig) -> dict[str, Any]:
    """The key set a board provisioned for this site trusts: release.keys_file."""
    ks = keyset.from_config(cfg)
    if ks is None or ks.envelope is None:
        raise BadInput("release.keys_file is not set in fleet.toml: boards need a signed key set "
                       "(picoctl keys root, then picoctl keys sign-set)")
    return ks.envelope


def site_settings(cfg: FleetConfig, hub_url: str) -> dict[str, Any]:
    """What every board this site provisions gets besides its id and Wi-Fi (provision's keyword arguments):
    the certificate it pins for `hub_url`, the site's key set and the picow device type's intervals."""
    intervals = cfg.device_type("picow")
    return {"hub_cert": hub_certificate(cfg, hub_url), "keys": site_keys(cfg),
            "heartbeat_s": intervals.heartbeat_interval_s, "check_s": intervals.check_interval_s}


def board_image(config: dict[str, Any], version: str, app: dict[str, bytes], agent: dict[str, bytes],
                hub_cert: bytes | None = None, keys: dict[str, Any] | None = None,
                floor: str = FACTORY_VERSION) -> dict[str, bytes]:
    """Every file of a freshly provisioned board, by path from the flash root. Without `keys` the
    board trusts no release key and refuses every offer."""
    files = dict(agent)
    if keys is not None:
        files[TRUST] = trust_file(keys, floor)
    if hub_cert is not None:
        files[HUB_CERT] = hub_cert
    files.update({f"app/{name}": data for name, data in app.items()})
    files["config.json"] = (json.dumps(config, indent=1) + "\n").encode()
    files["ota/state.json"] = json.dumps(initial_state(version)).encode()
    return files


def check_out_folder(out: Path) -> Path:
    """A folder to write a board image into: one that does not hold a board's config.json yet."""
    out = Path(out)
    if (out / "config.json").exists():
        raise BadInput(f"{out}: already holds a provisioned board (config.json); refusing to overwrite its key")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: not a folder")
    return out


def write_folder(out: Path, files: dict[str, bytes], progress: Progress) -> None:
    """Write the image into `out` (see check_out_folder)."""
    out = check_out_folder(out)
    progress.start(total=sum(len(d) for d in files.values()), phase="write")
    for name, data in sorted(files.items()):
        p = out / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        progress.advance(len(data), item=name)
    progress.finish()


def provision(
    device_id: str,
    hub_url: str,
    register: Callable[[str, str], str],
    deliver: Callable[[dict[str, bytes]], object],
    wifi_ssid: str = "",
    wifi_password: str = "",
    release_dir: Path | None = None,
    mpy: bool = True,
    hub_cert: bytes | None = None,
    keys: dict[str, Any] | None = None,
    **settings: Any,
) -> Provisioned:
    """Build the image first (so bad input costs nothing), register the device (`register(id, type)`
    answers its key), then hand the files to `deliver` (a folder writer or a USB push). `keys` is the
    site's key set (site_keys): the board trusts its release keys, and a given release must be signed
    by one of them; its signed min_version becomes the board's floor."""
    check_device_id(device_id)
    if keys is None:
        raise BadInput("a board needs the release key set it is to trust (release.keys_file)")
    trusted = keyset.check_first(keys, "the key set for the board").release
    version, app = app_files(release_dir, mpy, trusted)
    # the floor of a board that took this release over the air: its signed min_version (checked by app_files)
    floor = release.load_meta(release_dir).get("min_version", FACTORY_VERSION) if release_dir else FACTORY_VERSION
    device_config(device_id, "00" * 32, hub_url, hub_cert=hub_cert, **settings)  # validate before registering
    agent = agent_files(mpy)
    key = register(device_id, "picow")
    if not isinstance(key, str) or not HEX64.fullmatch(key):
        raise BadInput("the hub answered a device key that is not 64 hex digits")
    files = board_image(device_config(device_id, key, hub_url, wifi_ssid, wifi_password, hub_cert, **settings),
                        version, app, agent, hub_cert, keys, floor)
    deliver(files)
    return Provisioned(device_id, version, files)
