"""A site: the folder a hub runs from (fleet.toml, data folder, operator token, release and root
keypairs and the first release key set, signed by the root key)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from . import atomic, config, keyset, signing, workdirs
from .errors import BadInput, PicoctlError


INIT_PREFIX = ".init-"  # <directory>/.init-XXXX: a site being made, its parts renamed into place when whole
PARTS = ("fleet.toml", "operator.token", "data", "keys")


def init_site(directory: Path, port: int = config.DEFAULT_PORT) -> Path:
    """Create everything a hub needs under `directory`; refuse to overwrite. Returns the fleet.toml path.

    The parts are made in a private folder inside `directory`, then renamed into place: a full disk
    or a kill leaves none of them (the next init removes such a folder), so the next try can succeed.
    """
    directory = directory.expanduser()
    for p in (directory / n for n in PARTS):
        if p.exists():
            raise BadInput(f"{p}: already exists; refusing to overwrite (choose another --dir)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        workdirs.remove_interrupted(directory, INIT_PREFIX)
        with workdirs.work_dir(directory, INIT_PREFIX) as work:
            _make_parts(work, port)
            for name in PARTS:
                os.replace(work / name, directory / name)
            atomic.fsync_dir(directory)
    except OSError as exc:
        for name in PARTS:  # a rename that failed halfway: what did go in is taken out again
            if (directory / name).is_dir():
                shutil.rmtree(directory / name, ignore_errors=True)
            else:
                (directory / name).unlink(missing_ok=True)
        raise PicoctlError(f"{directory}: cannot create the site: {exc.strerror or exc}; nothing was left there") from None
    return directory / "fleet.toml"


def _make_parts(work: Path, port: int) -> None:
    release_key, _ = signing.write_keypair(work / "keys")
    root_key, _ = signing.write_keypair(work / "keys", "root")
    root_hex = root_key.read_text().strip()
    keyset.write(work / "keys" / "keys.json", keyset.make(
        1, [signing.public_from_private(root_hex)], [signing.public_from_private(release_key.read_text().strip())], [root_hex]))
    (work / "data").mkdir()
    fd = os.open(work / "operator.token", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    cfg = config.FleetConfig()
    cfg.hub.port = port
    cfg.hub.public_url = f"http://localhost:{port}"
    cfg.release.keys_file = "keys/keys.json"
    cfg.release.signing_key_file = "keys/release.key"
    cfg.pi.root = "pi"
    config.save(cfg, work / "fleet.toml")
