"""Get a pi release into `<root>/.incoming/`: a folder, a meta.json (path or URL) or an artifact URL.

The signature of meta.json is checked before any artifact byte is read; the artifact is then copied
or streamed (httpx) into a private file, hashed and size-capped on the way, and compared with the
signed sha256 (and with `--sha256` when given). Only that private copy is ever unpacked.
Every request, redirects included, goes only where urls.check_hop lets a fetch from the URL the
operator named go, and each fetch is done within its fetch_bounds.allowed_s (the meta.json at its cap,
the artifact at its signed size) or given up on with one line.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from .. import keyset, release
from ..config import FetchConfig, FleetConfig
from ..errors import BadInput, PicoctlError
from ..fetch_bounds import Deadline
from ..progress import Progress
from ..protocol import HEX64
from ..urls import MAX_REDIRECTS, check_hop, check_url, is_url, too_many_redirects
from .layout import disk_error

CHUNK = 1 << 16
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Fetched:
    meta: dict[str, Any]
    artifact: Path  # private copy under .incoming/, hash verified


def _client(named: str, rule: FetchConfig) -> httpx.AsyncClient:
    """A client that follows at most MAX_REDIRECTS redirects, each request held to check_hop from `named`."""
    async def allowed(request: httpx.Request) -> None:
        check_hop(named, str(request.url), "redirect or artifact_url")

    return httpx.AsyncClient(timeout=httpx.Timeout(rule.floor_s, connect=CONNECT_TIMEOUT_S), follow_redirects=True,
                             max_redirects=MAX_REDIRECTS, event_hooks={"request": [allowed]})


async def _stream(url: str, named: str, rule: FetchConfig, size: int, what: str, take: Callable[[bytes], None],
                  started: Callable[[httpx.Response], None]) -> None:
    deadline = Deadline.of(rule, size, f"{url}: {what}")
    async with _client(named, rule) as client, deadline.held(), client.stream("GET", url) as r:
        if r.status_code != 200:
            raise PicoctlError(f"{url}: HTTP {r.status_code} fetching {what}")
        started(r)
        async for chunk in deadline.chunks(r, None):
            take(chunk)


def _get(url: str, named: str, rule: FetchConfig, size: int, what: str, take: Callable[[bytes], None],
         started: Callable[[httpx.Response], None] = lambda r: None) -> None:
    """GET `url` (for a fetch that started at `named`), each chunk of its body to `take`, all of it
    within allowed_s(rule, size); `started` sees the response before its body."""
    try:
        asyncio.run(_stream(url, named, rule, size, what, take, started))
    except httpx.TooManyRedirects as exc:
        raise PicoctlError(too_many_redirects(url, exc)) from None
    except httpx.HTTPError as exc:
        raise PicoctlError(f"{url}: cannot fetch {what}: {exc}") from None


def fetch_meta_url(url: str, rule: FetchConfig, named: str | None = None) -> dict[str, Any]:
    """Download and shape-check a published meta.json (for a fetch that started at `named`, else at `url`)."""
    check_url(url, "meta.json URL")
    cap = release.MAX_META_BYTES
    body = bytearray()

    def take(chunk: bytes) -> None:
        body.extend(chunk)
        if len(body) > cap:
            raise BadInput(f"{url}: meta.json larger than {cap} bytes")

    _get(url, named or url, rule, cap, "meta.json", take)
    return release.parse_meta(bytes(body), url)


def _locate(source: str, rule: FetchConfig) -> tuple[dict[str, Any], str]:
    """(meta, where the artifact is: URL or local path) for any accepted SOURCE."""
    if is_url(source):
        path = urlsplit(check_url(source, "release URL")).path
        if path.endswith(".json") or path.endswith("/"):
            meta_url = source if path.endswith(".json") else source + "meta.json"
            meta = fetch_meta_url(meta_url, rule)
            return meta, check_url(urljoin(meta_url, meta["artifact_url"]), f"{meta_url}: artifact_url")
        meta = fetch_meta_url(urljoin(source, "meta.json"), rule, source)
        if PurePosixPath(path).name != meta["artifact"]:
            raise BadInput(f"{source}: the meta.json beside it is for {meta['artifact']}, not this artifact")
        return meta, source
    p = Path(source)
    if not p.exists():
        raise BadInput(f"{source}: no such release folder, meta.json or URL")
    folder = p if p.is_dir() else p.parent
    meta = release.load_meta(p if p.suffix == ".json" else folder)
    if p.is_file() and p.suffix != ".json" and p.name != meta["artifact"]:
        raise BadInput(f"{source}: the meta.json beside it is for {meta['artifact']}, not this artifact")
    return meta, str(folder / meta["artifact"])


def check_trust(cfg: FleetConfig, meta: dict[str, Any], where: str) -> None:
    """Target, size cap and Ed25519 signature; the public key in fleet.toml is required."""
    if meta["target"] != "pi":
        raise BadInput(f"{where}: a {meta['target']} release, not a pi release")
    if not isinstance(meta.get("root"), str):
        raise BadInput(f"{where}: a pi release needs its archive 'root' in meta.json")
    release.safe_member_name(meta["root"])
    if not isinstance(meta["size"], int) or not 0 < meta["size"] <= cfg.pi.max_archive_bytes:
        raise BadInput(f"{where}: artifact size {meta['size']} is over pi.max_archive_bytes ({cfg.pi.max_archive_bytes})")
    keys = keyset.release_keys(cfg, "a Pi deploy")
    try:
        release.check_signature(meta, keys, where)
    except PicoctlError as exc:
        raise BadInput(str(exc)) from None


def _chunks_from_file(path: Path) -> Generator[bytes, None, None]:
    try:
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                yield block
    except OSError as exc:
        raise PicoctlError(f"{path}: cannot read artifact: {exc.strerror}") from None


def fetch(cfg: FleetConfig, source: str, incoming: Path, progress: Progress, sha256: str | None = None) -> Fetched:
    """Verify the release's meta, then copy its artifact into `incoming`, hash-checked."""
    if sha256 is not None and not HEX64.fullmatch(sha256.lower()):
        raise BadInput(f"--sha256: expected 64 hex digits, got {sha256!r}")
    meta, where = _locate(source, cfg.fetch)
    check_trust(cfg, meta, source)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix="artifact-", suffix=".tar.gz", dir=incoming)
    except OSError as exc:
        raise disk_error(exc, f"{where}: cannot store the download in {incoming}") from None
    tmp = Path(tmp_name)
    h, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as f:
            def take(block: bytes) -> None:
                nonlocal size
                size += len(block)
                if size > meta["size"]:
                    raise BadInput(f"{where}: artifact is longer than the {meta['size']} bytes meta.json signs for")
                h.update(block)
                f.write(block)
                progress.advance(len(block))

            if is_url(where):
                def started(r: httpx.Response) -> None:
                    progress.phase("download", total=int(r.headers.get("content-length") or meta["size"]), item=where)

                _get(where, source, cfg.fetch, meta["size"], "the artifact", take, started)
            else:
                progress.phase("copy", total=meta["size"], item=where)
                for block in _chunks_from_file(Path(where)):
                    take(block)
        digest = h.hexdigest()
        if size != meta["size"]:
            raise BadInput(f"{where}: artifact is {size} bytes, meta.json signs for {meta['size']}: truncated")
        if digest != meta["sha256"]:
            raise BadInput(f"{where}: sha256 does not match the signed meta.json: the artifact was altered")
        if sha256 is not None and digest != sha256.lower():
            raise BadInput(f"{where}: sha256 {digest} is not the expected --sha256 {sha256.lower()}")
    except OSError as exc:  # reading errors are PicoctlErrors already: this is the disk refusing our copy
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, f"{where}: cannot store the download in {incoming}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Fetched(meta, tmp)
