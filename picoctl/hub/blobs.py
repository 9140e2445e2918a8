"""Content-addressed artifact store under `<data_dir>/blobs`, served with HTTP Range (Starlette's FileResponse).

A blob is named by its sha256 (`blobs/ab/abcdef…`), written to a temp file, fsynced and renamed, so
a blob that exists is whole. The same layout in any folder a static host or CDN serves is what
`hub.artifact_base_url` points offers at (`release publish --artifacts-dir` fills it).

Replicas on PostgreSQL (`shared`) also keep every blob they store in the database, in chunks written
in one transaction (so a blob there is whole too); a replica asked for a blob it does not hold
fetches it from there on the first request, checks its sha256, keeps it in its folder and serves it
as any other. A release published through any replica is so served by all of them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

import anyio.to_thread
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.types import Receive, Scope, Send

from .. import atomic
from ..protocol import HEX64
from ..release import read_tar_files
from ..workdirs import remove_interrupted, work_dir
from .db import BLOBS, Store
from .http import ApiError

CHUNK = 256 * 1024  # bytes of a blob per row of the database's copy
FETCH_PREFIX = ".fetch-"  # <root>/.fetch-XXXX: the work folder of one blob being fetched from the database


def share(c: Any, sha256: str, path: Path) -> None:
    """Keep the blob at `path` in the database (in the transaction of `c`), unless it is there already."""
    with open(path, "rb") as f:
        n = 0
        while True:
            chunk = f.read(CHUNK)
            if not chunk and n:
                return
            c.execute(f"INSERT INTO {BLOBS} (sha256, n, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                      (sha256, n, chunk))  # an empty blob is one empty chunk: there, and whole
            n += 1


class BlobStore:
    def __init__(self, root: Path, shared: str | None = None) -> None:
        """Blobs under `root`; with `shared` (a PostgreSQL URL) also in that database, for every replica."""
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._shared = shared
        self._db: Store | None = None
        if shared:
            remove_interrupted(self.root, FETCH_PREFIX)  # fetches a killed hub left half-written

    def _store(self) -> Store:
        assert self._shared is not None
        if self._db is None:
            self._db = Store(self._shared)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def path(self, sha256: str) -> Path:
        if not HEX64.fullmatch(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return HEX64.fullmatch(sha256) is not None and self.path(sha256).is_file()

    def put(self, data: bytes) -> str:
        """Store `data`; return its sha256."""
        sha = hashlib.sha256(data).hexdigest()
        if self.has(sha):
            return sha
        dest = self.path(sha)
        dest.parent.mkdir(parents=True, exist_ok=True)  # the folder too, should someone have removed it
        atomic.write_bytes(dest, data)
        return sha

    def put_file(self, src: Path, sha256: str) -> None:
        """Move a verified file (on the same filesystem) into the store under `sha256`."""
        dest = self.path(sha256)
        if dest.is_file():
            src.unlink()
            return
        dest.parent.mkdir(parents=True, exist_ok=True)  # the folder too, should someone have removed it
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.replace(src, dest)

    def put_release(self, meta: dict[str, Any], artifact: Path, move: bool = False) -> None:
        """Store a verified release's blobs: every file of a tar release, then the artifact (moved or
        copied); shared, all of them in the database too before the release is recorded."""
        stored = []
        if meta.get("format") == "tar":
            stored = [self.put(data) for data in read_tar_files(artifact).values()]
        if move:
            self.put_file(artifact, meta["sha256"])
        else:
            self.put(artifact.read_bytes())
        if self._shared is not None:
            self.share([*stored, meta["sha256"]])

    def share(self, shas: Iterable[str]) -> None:
        """Keep these blobs of the folder in the database, in one transaction."""
        with self._store().transaction() as c:
            for sha in shas:
                share(c, sha, self.path(sha))

    def shared_again(self, c: Any, shas: Iterable[str]) -> None:
        """Put back into the database (in the transaction of `c`) those of these blobs of the folder a
        release removed by another replica took out meanwhile; shared only."""
        if self._shared is None:
            return
        for sha in shas:
            if c.execute(f"SELECT 1 FROM {BLOBS} WHERE sha256 = ? AND n = 0", (sha,)).fetchone() is None:
                share(c, sha, self.path(sha))

    def shared_blobs(self, c: Any) -> set[str]:
        """The blobs the database holds (in the transaction of `c`); shared only, else none."""
        if self._shared is None:
            return set()
        return {r["sha256"] for r in c.execute(f"SELECT DISTINCT sha256 FROM {BLOBS}")}

    def unshare(self, c: Any, shas: Iterable[str]) -> None:
        """Take these blobs out of the database (in the transaction of `c`); shared only."""
        if self._shared is not None:
            for sha in shas:
                c.execute(f"DELETE FROM {BLOBS} WHERE sha256 = ?", (sha,))

    def remove(self, shas: Iterable[str]) -> int:
        """Remove these blobs from the folder; the bytes freed."""
        freed = 0
        for sha in shas:
            path = self.path(sha)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            freed += size
        return freed

    def unreferenced(self, referenced: set[str]) -> list[str]:
        """The blobs of the folder outside `referenced` (what a removal or an upload a killed hub left)."""
        return sorted(p.name for p in self.root.glob("??/*")
                      if HEX64.fullmatch(p.name) and p.parent.name == p.name[:2] and p.name not in referenced)

    def fetch(self, sha256: str) -> bool:
        """Copy a blob the database holds into the folder, one chunk in memory at a time, checked
        against its sha256; False if it holds none."""
        digest = hashlib.sha256()
        self.root.mkdir(parents=True, exist_ok=True)
        with work_dir(self.root, FETCH_PREFIX) as work:
            with open(work / sha256, "wb") as f, self._store().reading() as c:
                n = 0
                while row := c.execute(f"SELECT data FROM {BLOBS} WHERE sha256 = ? AND n = ?", (sha256, n)).fetchone():
                    digest.update(row["data"])
                    f.write(row["data"])
                    n += 1
            if not n or digest.hexdigest() != sha256:
                return False
            self.put_file(work / sha256, sha256)
        return True

    def response(self, sha256: str) -> Response:
        """The blob, whole (200) or by Range (206); 416 for a range outside it, 404 if unknown; shared,
        one this replica does not hold yet is fetched from the database first."""
        if not HEX64.fullmatch(sha256) or not (self.has(sha256) or self._shared):
            raise ApiError(404, f"no artifact with sha256 {sha256}")
        if not self.has(sha256):
            return _Fetched(self, sha256)
        return ArtifactResponse(self.path(sha256), headers={"ETag": f'"{sha256}"'},
                                media_type="application/octet-stream")


class _Fetched(Response):
    """A blob to fetch from the database (off the event loop) before it is served from the folder."""

    def __init__(self, blobs: BlobStore, sha256: str) -> None:
        super().__init__()
        self.blobs, self.sha256 = blobs, sha256

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await anyio.to_thread.run_sync(self.blobs.fetch, self.sha256):
            raise ApiError(404, f"no artifact with sha256 {self.sha256}")
        await self.blobs.response(self.sha256)(scope, receive, send)


class ArtifactResponse(FileResponse):
    """Starlette's file response, its Range refusals answered in the hub's JSON error shape."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            return super()._parse_range_header(http_range, file_size)
        except RangeNotSatisfiable:
            raise ApiError(416, f"range {http_range[:80]!r} is outside the artifact's {file_size} bytes",
                           {"Content-Range": f"bytes */{file_size}"}) from None
        except MalformedRangeHeader as exc:
            raise ApiError(400, f"malformed Range {http_range[:80]!r}: {exc.content}") from None
