"""A site: the folder a hub runs from (fleet.toml, data folder, operator token, release and root
keypairs and the first release key set, signed by the root key)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from . import config, keyset, signing
from .errors import BadInput


def init_site(directory: Path, port: int = config.DEFAULT_PORT) -> Path:
    """Create everything a hub needs under `directory`; refuse to overwrite. Returns the fleet.toml path."""
    directory = directory.expanduser()
    paths = [directory / n for n in ("fleet.toml", "operator.token", "data", "keys")]
    for p in paths:
        if p.exists():
            raise BadInput(f"{p}: already exists; refusing to overwrite (choose another --dir)")
    directory.mkdir(parents=True, exist_ok=True)
    release_key, _ = signing.write_keypair(directory / "keys")
    root_key, _ = signing.write_keypair(directory / "keys", "root")
    root_hex = root_key.read_text().strip()
    keyset.write(directory / "keys" / "keys.json", keyset.make(
        1, [signing.public_from_private(root_hex)], [signing.public_from_private(release_key.read_text().strip())], [root_hex]))
    (directory / "data").mkdir()
    fd = os.open(directory / "operator.token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    cfg = config.FleetConfig()
    cfg.hub.port = port
    cfg.hub.public_url = f"http://localhost:{port}"
    cfg.release.keys_file = "keys/keys.json"
    cfg.release.signing_key_file = "keys/release.key"
    cfg.pi.root = "pi"
    config.save(cfg, directory / "fleet.toml")
    return directory / "fleet.toml"
