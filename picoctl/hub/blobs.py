"""Content-addressed artifact store under `<data_dir>/blobs`, served with HTTP Range (Starlette's FileResponse).

A blob is named by its sha256 (`blobs/ab/abcdef…`), written to a temp file, fsynced and renamed, so
a blob that exists is whole. The same layout in any folder a static host or CDN serves is what
`hub.artifact_base_url` points offers at (`release publish --artifacts-dir` fills it).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response

from .. import atomic
from ..release import read_tar_files
from .http import ApiError

SHA256 = re.compile(r"[0-9a-f]{64}")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return SHA256.fullmatch(sha256) is not None and self.path(sha256).is_file()

    def put(self, data: bytes) -> str:
        """Store `data`; return its sha256."""
        sha = hashlib.sha256(data).hexdigest()
        if self.has(sha):
            return sha
        dest = self.path(sha)
        dest.parent.mkdir(exist_ok=True)
        atomic.write_bytes(dest, data)
        return sha

    def put_file(self, src: Path, sha256: str) -> None:
        """Move a verified file (on the same filesystem) into the store under `sha256`."""
        dest = self.path(sha256)
        if dest.is_file():
            src.unlink()
            return
        dest.parent.mkdir(exist_ok=True)
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.replace(src, dest)

    def put_release(self, meta: dict[str, Any], artifact: Path, move: bool = False) -> None:
        """Store a verified release's blobs: every file of a tar release, then the artifact (moved or copied)."""
        if meta.get("format") == "tar":
            for data in read_tar_files(artifact).values():
                self.put(data)
        if move:
            self.put_file(artifact, meta["sha256"])
        else:
            self.put(artifact.read_bytes())

    def response(self, sha256: str) -> Response:
        """The blob, whole (200) or by Range (206); 416 for a range outside it, 404 if unknown."""
        if not self.has(sha256):
            raise ApiError(404, f"no artifact with sha256 {sha256}")
        return ArtifactResponse(self.path(sha256), headers={"ETag": f'"{sha256}"'},
                                media_type="application/octet-stream")


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
