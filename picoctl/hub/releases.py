"""Accepting releases on the hub: uploaded by `picoctl release publish`, or fetched from a URL.

Either way the release lands in a private temp folder, goes through picoctl.release.verify (size,
sha256, every file's sha256, the Ed25519 signature under a release key of the site's key set), its
files go into the blob store, and only then is it recorded. The same version with other content is
refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urljoin

import anyio.to_thread
import httpx

from .. import keyset
from .. import release as release_mod
from ..errors import BadInput, OutOfBounds, PicoctlError
from ..fetch_bounds import Deadline
from ..protocol import META_HEADER
from ..urls import MAX_REDIRECTS, check_hop, check_url, too_many_redirects
from ..workdirs import work_dir
from . import store
from .auth import same_secret
from .http import ApiError, parse_json
from .ingest import Tx
from .state import UPLOAD_PREFIX, Hub



def decode_meta(header: str | None) -> Any:
    """meta.json from the base64 META_HEADER."""
    if not header:
        raise ApiError(400, f"missing {META_HEADER} header (base64 of meta.json)")
    try:
        raw = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{META_HEADER} is not base64 of a JSON meta.json: {exc}") from None
    return parse_json(raw, META_HEADER)


def signed_size(meta: dict[str, Any]) -> int:
    """The artifact size an unchecked meta.json gives, for its fetch's bound (0 when it gives none that
    could be right: accept refuses such a meta before a byte of its artifact is read)."""
    size = meta.get("size")
    return size if isinstance(size, int) and 0 < size <= release_mod.MAX_RELEASE_BYTES else 0


async def _write_capped(chunks: AsyncIterator[bytes], dest: Path, size: int) -> None:
    """The artifact into `dest`, refused as soon as it passes the `size` its meta.json gives."""
    got = 0
    with open(dest, "wb") as f:
        async for chunk in chunks:
            got += len(chunk)
            if got > size:
                raise ApiError(422, f"artifact is longer than the {size} bytes its meta.json gives")
            f.write(chunk)


async def accept(hub: Hub, meta: Any, chunks: AsyncIterator[bytes], actor: str) -> tuple[dict[str, Any], bool]:
    """Verify and record a release whose artifact arrives as `chunks`. Returns (meta, newly added)."""
    try:
        meta = release_mod.check_meta(meta)
    except PicoctlError as exc:
        raise ApiError(400, str(exc)) from None
    if meta["size"] > release_mod.MAX_RELEASE_BYTES:
        raise ApiError(413, f"artifact of {meta['size']} bytes is over the limit of {release_mod.MAX_RELEASE_BYTES}")
    try:
        public_keys = keyset.release_keys(hub.cfg, "the hub")
    except PicoctlError as exc:
        raise ApiError(409, f"{exc}; it cannot accept releases") from None
    try:
        with work_dir(hub.tmp_dir, UPLOAD_PREFIX) as work:
            (work / "meta.json").write_text(json.dumps(meta))
            artifact = work / meta["artifact"]
            await _write_capped(chunks, artifact, meta["size"])
            try:
                await anyio.to_thread.run_sync(release_mod.verify, work, public_keys)
            except PicoctlError as exc:
                raise ApiError(422, str(exc).replace(str(work) + "/", "").replace(str(work), "release")) from None
            async with hub.blob_lock:  # no removal takes a blob out between its put and the record
                await anyio.to_thread.run_sync(hub.blobs.put_release, meta, artifact, True)
                added = await hub.writer.run(lambda tx: _record(tx, hub, meta, actor))
    except OSError as exc:
        raise ApiError(503, f"cannot store the release, nothing was kept: {exc.strerror}") from None
    return meta, added


def _record(tx: Tx, hub: Hub, meta: dict[str, Any], actor: str) -> bool:
    store.lock_blobs(tx.c)
    hub.blobs.shared_again(tx.c, release_mod.blobs_of(meta))  # those another replica's removal took out meanwhile
    existing = store.release(tx.c, meta["target"], meta["version"])
    if existing is not None:
        if existing["sha256"] == meta["sha256"] and existing["meta"] == meta:
            return False
        raise ApiError(409, f"release {meta['target']} {meta['version']} is already published with other content")
    now = time.time()
    ev = store.publish_release(tx.c, actor, meta, now)
    tx.emit("release", {"target": meta["target"], "version": meta["version"], "sha256": meta["sha256"],
                        "meta": meta, "published_at": now})
    tx.emit("history", ev.as_dict())
    return True


async def fetch(hub: Hub, meta_url: str, actor: str) -> tuple[dict[str, Any], bool]:
    """Fetch a meta.json by URL, then its artifact (relative to it unless absolute), and accept them.
    Every request, redirects included, goes only where urls.check_hop lets a fetch from `meta_url` go;
    each of the two fetches is held to fetch_bounds (the meta.json at its cap, the artifact at the
    size it gives), or the answer is 502."""
    try:
        check_url(meta_url, "meta url")
    except BadInput as exc:
        raise ApiError(400, str(exc)) from None

    async def allowed(request: httpx.Request) -> None:
        try:
            await anyio.to_thread.run_sync(check_hop, meta_url, str(request.url), "redirect or artifact_url")
        except BadInput as exc:
            raise ApiError(422, str(exc)) from None

    rule = hub.cfg.fetch
    try:
        async with httpx.AsyncClient(timeout=rule.floor_s, follow_redirects=True, max_redirects=MAX_REDIRECTS,
                                     event_hooks={"request": [allowed]}) as client, AsyncExitStack() as stack:
            try:
                meta_deadline = Deadline.of(rule, release_mod.MAX_META_BYTES, f"{meta_url}: meta.json")
                meta = parse_json(await _get_meta(client, meta_url, meta_deadline), f"{meta_url}: meta.json")
            except ApiError as exc:
                if exc.status != 400:
                    raise
                raise ApiError(422, exc.message) from None
            if not isinstance(meta, dict) or not isinstance(meta.get("artifact_url"), str):
                raise ApiError(422, f"{meta_url}: meta.json has no artifact_url")
            artifact_url = urljoin(meta_url, meta["artifact_url"])
            try:
                check_url(artifact_url, f"{meta_url}: artifact_url")
            except BadInput as exc:
                raise ApiError(422, str(exc)) from None
            deadline = Deadline.of(rule, signed_size(meta), f"{artifact_url}: the artifact")
            async with deadline.held():
                resp = await stack.enter_async_context(client.stream("GET", artifact_url))
            if resp.status_code != 200:
                raise ApiError(502, f"{artifact_url}: HTTP {resp.status_code}")
            return await accept(hub, meta, deadline.chunks(resp, None), actor)  # accept caps it at `size`
    except OutOfBounds as exc:
        raise ApiError(502, str(exc)) from None
    except httpx.TooManyRedirects as exc:
        raise ApiError(502, too_many_redirects(meta_url, exc)) from None
    except httpx.HTTPError as exc:
        raise ApiError(502, f"cannot fetch the release: {exc}") from None


async def _get_meta(client: httpx.AsyncClient, url: str, deadline: Deadline) -> bytes:
    """The body of a meta.json URL, refused past MAX_META_BYTES or its deadline."""
    async with deadline.held(), client.stream("GET", url) as r:
        if r.status_code != 200:
            raise ApiError(502, f"{url}: HTTP {r.status_code}")
        return await deadline.body(r, release_mod.MAX_META_BYTES)


def check_webhook_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """401 unless `header` is `sha256=<hex HMAC-SHA256 of body under secret>` (GitHub's form)."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not header or not same_secret(expected, header.strip().lower()):
        raise ApiError(401, "X-Hub-Signature-256 missing or wrong")
