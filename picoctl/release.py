"""Build and verify release bundles for the three targets.

A release directory holds `meta.json` and one artifact:
- `pi`:            `<name>-<version>.tar.gz`, the Pi app's source tree;
- `picow`/`pico`:  `<target>-<version>.tar`, the application files, each also listed in `meta.files`;
- `pico` from a `.uf2` source: the UF2 image itself.

`meta.json` is signed with Ed25519 over sha256 of the canonical ASCII JSON of every other field
(signing.py): `_type` "release" marks that form, `signed_by` names the key, and an optional
`min_version` is the floor below which boards that accept this release never go again.
The same inputs give byte-identical artifacts: sorted entries, fixed mtimes and owners.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence

from . import protocol, signing, urls, workdirs
from .diagnostics import mpy_file_version
from .errors import BadInput, PicoctlError

BOARD_TARGETS = ("picow", "pico")  # releases for boards (over the air or by USB); the Pi's deploys itself
TARGETS = ("pi", *BOARD_TARGETS)
ROLLOUTS = ("canary", "stable")
FORMATS = ("tar.gz", "tar", "uf2")
ENTRY_FILE = "main.py"
# Files that must stay as source on a board: MicroPython runs boot.py/main.py only as .py.
KEEP_AS_SOURCE = {"main.py", "boot.py"}
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?\Z"  # \Z: `$` would take a version ending in a newline
)
FIXED_MTIME = 315532800  # 1980-01-01, the earliest time a zip or FAT filesystem can hold
SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules"}
META_FIELDS = ("version", "artifact_url", "sha256", "signature", "rollout", "created_at")
SMOKE_FIELD = "smoke"  # the signed result of `release build --smoke`
BUILD_PREFIX = ".build-"  # <out's folder>/.build-XXXX: a build's work folder, renamed to `out` when whole
MAX_META_BYTES = 1 << 20  # a meta.json fetched by URL is refused past this size, before it is parsed
MAX_RELEASE_BYTES = 512 * 1024 * 1024  # the largest artifact the hub takes
NAME_MAX_BYTES = 255  # LittleFS's LFS_NAME_MAX (and ext4's): the longest part of a path, in bytes
PUSH_TMP_SUFFIX = ".picoctl-tmp"  # `usb push` writes each file under this suffix, then renames it
RESERVED_SUFFIXES = (".tmp", PUSH_TMP_SUFFIX)  # ".tmp": the board agent's staging files (ota/fs.py)


def check_version(version: str) -> str:
    if not SEMVER.match(version):
        shown = f"{version[:80]!r}{'…' if len(version) > 80 else ''}"  # a long one is not said again whole
        raise BadInput(f"version {shown} is not a semantic version (expected X.Y.Z, e.g. 1.4.0)")
    return version


def check_target(target: str) -> str:
    """`target` when it is one of TARGETS (a release's target as a path names it), else BadInput."""
    if target not in TARGETS:
        raise BadInput(f"no release target {str(target)[:40]!r}: one of {', '.join(TARGETS)}")
    return target


def version_key(version: str) -> tuple:
    """Sort key implementing semver precedence (pre-releases before the release)."""
    m = SEMVER.match(version)
    if not m:
        raise BadInput(f"version {version!r} is not a semantic version")
    major, minor, patch, pre, _build = m.groups()
    pre_key: tuple = (1,)
    if pre:
        pre_key = (0, *[(0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")])
    return (int(major), int(minor), int(patch), pre_key)


@dataclass(frozen=True)
class SourceFile:
    name: str  # POSIX path relative to the source root, as it will be on the target
    path: Path


def iter_source(root: Path) -> Iterator[SourceFile]:
    """Regular files under `root`, sorted, skipping caches and hidden files; links (to files or
    folders) and names a release cannot hold are refused."""
    seen: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                raise BadInput(f"{Path(dirpath) / d}: links and special files cannot go into a release")
        for fn in sorted(filenames):
            if fn.startswith(".") or fn.endswith((".pyc", ".mpy~")):
                continue
            p = Path(dirpath) / fn
            if p.is_symlink() or not p.is_file():
                raise BadInput(f"{p}: links and special files cannot go into a release")
            name = PurePosixPath(p.relative_to(root).as_posix()).as_posix()
            _named(str(p), safe_member_name, name)
            _named(str(root), lambda n: check_case_clash(n, seen), name)
            yield SourceFile(name, p)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(dest: Path, files: list[tuple[str, bytes]], compress: bool) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
    payload = raw.getvalue()
    if compress:
        with open(dest, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as gz:
            gz.write(payload)
    else:
        dest.write_bytes(payload)


def _created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    ts = int(epoch) if epoch and epoch.isdigit() else int(time.time())
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _collect_app_files(source: Path, target: str, mpy: bool, work: Path) -> list[tuple[str, bytes]]:
    files = list(iter_source(source))
    if not files:
        raise BadInput(f"{source}: source folder is empty")
    if not any(f.name == ENTRY_FILE for f in files):
        raise BadInput(f"{source}: a {target} release needs its entry file {ENTRY_FILE} at the top of the source")
    if target == "picow":
        check_picow_names([f.name for f in files], str(source))
    out: list[tuple[str, bytes]] = []
    for f in files:
        if mpy and f.name.endswith(".py") and PurePosixPath(f.name).name not in KEEP_AS_SOURCE:
            from .mpy import compile_mpy

            dst = work / "mpy" / (f.name[:-3] + ".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            compile_mpy(f.path, dst, f.name)
            out.append((f.name[:-3] + ".mpy", dst.read_bytes()))
        else:
            out.append((f.name, f.path.read_bytes()))
    out.sort()
    return out


def build(
    target: str,
    version: str,
    source: Path,
    out: Path,
    key_hex: str | None = None,
    rollout: str = "canary",
    artifact_base_url: str | None = None,
    mpy: bool = False,
    name: str = "pi-sensors",
    min_version: str | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Build a release into `out` (which must not exist yet) and return its meta; `log` hears of
    the leftovers of an interrupted build it removed."""
    if min_version is not None:
        check_version(min_version)
        if version_key(min_version) > version_key(version):
            raise BadInput(f"--min-version {min_version} is above the release's own version {version}")
    if target not in TARGETS:
        raise BadInput(f"unknown target {target!r} (expected one of {', '.join(TARGETS)})")
    if rollout not in ROLLOUTS:
        raise BadInput(f"unknown rollout {rollout!r} (expected canary or stable)")
    check_version(version)
    source = Path(source)
    if not source.exists():
        raise BadInput(f"{source}: source does not exist")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInput(f"{out}: output exists and is not empty; refusing to overwrite a release")
    out.parent.mkdir(parents=True, exist_ok=True)
    if interrupted := workdirs.remove_interrupted(out.parent, BUILD_PREFIX):
        log(f"removed {interrupted} unfinished build folder(s) an interrupted build left in {out.parent}")

    with workdirs.work_dir(out.parent, BUILD_PREFIX) as work:
        stage = work / "release"
        stage.mkdir()
        meta: dict[str, Any] = {"_type": signing.RELEASE_TYPE, "target": target, "version": version, "rollout": rollout}
        if min_version is not None:
            meta["min_version"] = min_version
        if source.is_file():
            if target != "pico" or source.suffix.lower() != ".uf2":
                raise BadInput(f"{source}: a file source must be a .uf2 image for target pico; use a folder otherwise")
            from .usb import uf2

            data = source.read_bytes()
            uf2.validate(data)
            artifact = f"pico-{version}.uf2"
            (stage / artifact).write_bytes(data)
            meta["format"] = "uf2"
        elif target == "pi":
            files = [(f.name, f.path.read_bytes()) for f in iter_source(source)]
            if not files:
                raise BadInput(f"{source}: source folder is empty")
            if ENTRY_FILE not in {n for n, _ in files}:
                raise BadInput(f"{source}: a pi release needs its entry file {ENTRY_FILE} at the top of the source")
            artifact = f"{name}-{version}.tar.gz"
            prefix = f"{name}-{version}"
            _write_tar(stage / artifact, [(f"{prefix}/{n}", d) for n, d in files], compress=True)
            meta["format"] = "tar.gz"
            meta["root"] = prefix
        else:
            files = _collect_app_files(source, target, mpy, work)
            versions = {mpy_file_version(d) for n, d in files if n.endswith(".mpy")}
            if len(versions) > 1:
                raise BadInput(f"{source}: .mpy files of several versions ({sorted(versions)}) in one release")
            if versions:
                meta["mpy_version"] = versions.pop()  # the .mpy format every board taking it must load
            artifact = f"{target}-{version}.tar"
            _write_tar(stage / artifact, files, compress=False)
            meta["format"] = "tar"
            meta["files"] = [
                {"name": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files
            ]
        artifact_path = stage / artifact
        meta["artifact"] = artifact
        meta["artifact_url"] = f"{artifact_base_url.rstrip('/')}/{artifact}" if artifact_base_url else artifact
        meta["size"] = artifact_path.stat().st_size
        meta["sha256"] = signing.sha256_file(artifact_path)
        meta["created_at"] = _created_at()
        if key_hex:
            meta["signed_by"] = signing.public_from_private(key_hex)
        meta["signature"] = signing.sign_document(meta, key_hex) if key_hex else ""
        (stage / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    return meta


def attest_smoke(release_dir: Path, record: dict[str, Any], key_hex: str | None) -> dict[str, Any]:
    """Record a smoke's result (picoctl.smoke) in a built release's meta.json and sign it again:
    the signature covers it like every other field. Returns the new meta."""
    release_dir = Path(release_dir)
    meta = load_meta(release_dir)
    meta[SMOKE_FIELD] = record
    if key_hex:
        meta["signed_by"] = signing.public_from_private(key_hex)
    meta["signature"] = signing.sign_document(meta, key_hex) if key_hex else ""
    tmp = release_dir / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, release_dir / "meta.json")
    return meta


def smoke_refusal(meta: dict[str, Any]) -> str | None:
    """Why a release has no passing smoke attestation; None when it has one."""
    record = meta.get(SMOKE_FIELD)
    if record is None:
        return "it has no smoke attestation (build it with `picoctl release build --smoke`)"
    if record.get("passed") is not True:
        return f"its smoke failed: {record.get('reason') or 'no reason recorded'}"
    return None


def smoke_summary(meta: dict[str, Any]) -> str:
    """A release's smoke attestation in a few words: `passed 20 s, 43 KiB`, `failed` or `-` (none)."""
    record = meta.get(SMOKE_FIELD)
    if not isinstance(record, dict):
        return "-"
    if record.get("passed") is not True:
        return "failed"
    heap = record.get("peak_heap")
    return f"passed {record.get('seconds', 0):g} s" + (f", {heap / 1024:.0f} KiB" if isinstance(heap, int) else "")


def load_meta(path: Path) -> dict[str, Any]:
    """Read and shape-check a meta.json; `path` is the file or its release directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "meta.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: no meta.json here") from None
    except OSError as exc:
        raise BadInput(f"{path}: not a readable meta.json: {exc.strerror}") from None
    return parse_meta(raw, str(path))


def parse_meta(raw: bytes, where: str) -> dict[str, Any]:
    """meta.json's bytes as written by any tool (UTF-8, a BOM allowed, any line ends), shape-checked.

    A key given twice is refused: tools disagree on which of the two counts.
    """
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise BadInput(f"{where}: key {key!r} appears twice")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise BadInput(f"{where}: {name} is not a number JSON allows")

    try:
        meta = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=unique, parse_constant=constant)
    except UnicodeDecodeError as exc:
        raise BadInput(f"{where}: not a readable meta.json: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise BadInput(f"{where}: not a readable meta.json: {exc}") from None
    except RecursionError:
        raise BadInput(f"{where}: not a readable meta.json: nested too deeply") from None
    return check_meta(meta, where)


def _is_count(value: Any) -> bool:
    """A non-negative integer a 64-bit store holds (JSON's true and false are not counts)."""
    return type(value) is int and 0 <= value < 1 << 63


def _is_plain_text(value: str) -> bool:
    """A URL's plain text (urls.is_plain) with no backslash: what a file name or a URL in a meta may hold."""
    return urls.is_plain(value) and "\\" not in value


def check_meta(meta: Any, where: str = "meta.json") -> dict[str, Any]:
    """Shape-check meta fields, naming the first one that is wrong."""
    if not isinstance(meta, dict):
        raise BadInput(f"{where}: expected a JSON object")
    for key in (*META_FIELDS, "target", "artifact", "size"):
        if key not in meta:
            raise BadInput(f"{where}: missing field {key!r}")
    for key in ("version", "artifact_url", "sha256", "signature", "rollout", "created_at", "target", "artifact"):
        if not isinstance(meta[key], str):
            raise BadInput(f"{where}: field {key!r} must be a string")
    _named(where, check_version, meta["version"])
    if not _is_count(meta["size"]):
        raise BadInput(f"{where}: field 'size' must be a number of bytes (a non-negative integer)")
    if meta["rollout"] not in ROLLOUTS:
        raise BadInput(f"{where}: field 'rollout' must be one of {', '.join(ROLLOUTS)}, got {meta['rollout'][:40]!r}")
    if meta.get("format") is not None and meta["format"] not in FORMATS:
        raise BadInput(f"{where}: field 'format' must be one of {', '.join(FORMATS)}, got {meta['format']!r:.40}")
    mpy_version = meta.get("mpy_version")
    if mpy_version is not None and not (type(mpy_version) is int and 0 < mpy_version < 256):
        raise BadInput(f"{where}: field 'mpy_version' must be an .mpy format version (1-255)")
    if meta["target"] not in TARGETS:
        raise BadInput(f"{where}: unknown target {meta['target']!r}")
    if "/" in meta["artifact"] or meta["artifact"] in ("", ".", "..") or not _is_plain_text(meta["artifact"]):
        raise BadInput(f"{where}: artifact must be a plain file name")
    if not meta["artifact_url"] or not _is_plain_text(meta["artifact_url"]):
        raise BadInput(f"{where}: artifact_url must be a URL or a file name, without spaces or control characters")
    if not protocol.HEX64.fullmatch(meta["sha256"]):
        raise BadInput(f"{where}: sha256 must be 64 lowercase hex digits")
    if "root" in meta:
        if not isinstance(meta["root"], str):
            raise BadInput(f"{where}: field 'root' must be a string")
        _named(where, safe_member_name, meta["root"])
    if "min_version" in meta:
        if not isinstance(meta["min_version"], str):
            raise BadInput(f"{where}: field 'min_version' must be a string")
        _named(where, check_version, meta["min_version"])
    if "signed_by" in meta and not (isinstance(meta["signed_by"], str) and protocol.HEX64.fullmatch(meta["signed_by"])):
        raise BadInput(f"{where}: signed_by must be 64 lowercase hex digits (an Ed25519 public key)")
    _check_smoke(meta.get(SMOKE_FIELD), where)
    files = meta.get("files", [])
    if not isinstance(files, list):
        raise BadInput(f"{where}: field 'files' must be a list")
    seen: dict[str, str] = {}
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and _is_count(f.get("size"))
                and isinstance(f.get("sha256"), str) and protocol.HEX64.fullmatch(f["sha256"])):
            raise BadInput(f"{where}: malformed entry in files: {f!r:.200}")
        _named(where, safe_member_name, f["name"])
        _named(where, lambda n: check_case_clash(n, seen), f["name"])
    if meta["target"] == "picow":
        check_picow_names([f["name"] for f in files], where)
    return meta


def _named(where: str, check: Callable[[str], object], value: str) -> None:
    """`check(value)`, its refusal naming the file it came from."""
    try:
        check(value)
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None


def _check_smoke(record: Any, where: str) -> None:
    """The smoke attestation's shape, as smoke_summary and the hub show it."""
    if record is None:
        return
    if not (isinstance(record, dict) and isinstance(record.get("passed"), bool)):
        raise BadInput(f"{where}: field {SMOKE_FIELD!r} must be an object with a true or false 'passed'")
    for key, kinds in (("seconds", (int, float)), ("peak_heap", (int,)), ("reason", (str,))):
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            raise BadInput(f"{where}: field {SMOKE_FIELD}.{key} has the wrong type ({type(value).__name__})")


def check_picow_names(names: list[str], where: str) -> None:
    """Refuse app files that would shadow the board's agent or a built-in module it imports."""
    for name in names:
        first, _, rest = name.partition("/")
        module = first if rest else first.removesuffix(".py").removesuffix(".mpy")
        if module in protocol.PICOW_RESERVED_NAMES:
            raise BadInput(f"{where}: {name!r} would shadow the board's OTA agent ({module!r} is reserved: "
                           "app/ comes first on the board's import path)")


def name_fault(name: Any) -> str | None:
    """Why a file name from a source folder, an archive or a meta cannot go onto a board or a Pi, or None.

    The one rule: a relative POSIX path whose parts are non-empty, not `.`/`..`, hold no backslash
    and no control character (C0, DEL, C1: a newline or an escape in a name breaks listings and the
    board's raw REPL), do not end in a dot or a space (trailing ones are dropped or refused by FAT and
    Windows tools), are at most NAME_MAX_BYTES bytes of UTF-8, and do not end in a suffix the board's
    agent or `usb push` writes its temporary files under. The board's agent applies the same rule to
    an offer (device_code/picow/ota/offer.py's safe_name; a test holds them to the same list).
    """
    if not isinstance(name, str) or not name:
        return "empty"
    if name.startswith("/"):
        return "absolute"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "not UTF-8"
    if "\\" in name:
        return "backslash"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in name):
        return "control character"
    for part in name.split("/"):
        if not part or part[-1] in ". ":
            return "empty part, `.`, `..` or a part ending in a dot or a space"
        if len(part.encode("utf-8")) > NAME_MAX_BYTES:
            return f"a part longer than {NAME_MAX_BYTES} bytes"
        if part.endswith(RESERVED_SUFFIXES):
            return f"ends in a reserved suffix ({' or '.join(RESERVED_SUFFIXES)})"
    return None


def safe_member_name(name: str) -> str:
    """`name`, or BadInput saying why it breaks the rule of name_fault."""
    fault = name_fault(name)
    if fault:
        raise BadInput(f"unsafe file name in release: {name!r:.300} ({fault})")
    return name


def check_case_clash(name: str, seen: dict[str, str]) -> None:
    """Refuse `name` when `seen` (casefolded name -> name, updated) holds another differing only in
    case: a release unpacked or copied on a case-insensitive filesystem would keep one of the two."""
    other = seen.setdefault(name.casefold(), name)
    if other != name:
        raise BadInput(f"file names {other!r} and {name!r} differ only in case")


def blobs_of(meta: dict[str, Any]) -> set[str]:
    """The sha256s of what a release is served as: its artifact and, for a tar release, each file."""
    return {meta["sha256"], *(f["sha256"] for f in meta.get("files", []))}


def read_tar_files(artifact: Path) -> dict[str, bytes]:
    """The regular files of a release tar, refusing unsafe names, links and devices; folder entries
    and `./` prefixes (as GNU tar writes them) are taken as they are meant."""
    out: dict[str, bytes] = {}
    seen: dict[str, str] = {}
    try:
        with tarfile.open(artifact, mode="r:*") as tar:
            for member in tar:
                name = member.name.rstrip("/") if member.isdir() else member.name
                while name.startswith("./"):
                    name = name[2:]
                if member.isdir() and name in ("", "."):
                    continue
                safe_member_name(name)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BadInput(f"{artifact}: entry {member.name!r} is not a regular file")
                if name in out:
                    raise BadInput(f"{artifact}: entry {member.name!r} appears twice")
                _named(str(artifact), lambda n: check_case_clash(n, seen), name)
                data = tar.extractfile(member)
                assert data is not None
                out[name] = data.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadInput(f"{artifact}: damaged archive: {exc}") from None
    return out


def verify(release_dir: Path, public_keys: str | Sequence[str] | None) -> dict[str, Any]:
    """Check a release directory; raise naming the first thing wrong, return its meta. The signature
    must verify under one of `public_keys` (a key or the release keys of a set); None skips it."""
    release_dir = Path(release_dir)
    meta = load_meta(release_dir)
    artifact = release_dir / meta["artifact"]
    if not artifact.is_file():
        raise PicoctlError(f"{artifact}: artifact missing")
    size = artifact.stat().st_size
    if size != meta["size"]:
        raise PicoctlError(f"{artifact}: size {size} differs from meta.json ({meta['size']}): truncated or replaced")
    if signing.sha256_file(artifact) != meta["sha256"]:
        raise PicoctlError(f"{artifact}: sha256 does not match meta.json: the artifact was altered")
    if meta.get("format") == "tar":
        files = read_tar_files(artifact)
        listed = {f["name"]: f for f in meta.get("files", [])}
        if set(files) != set(listed):
            raise PicoctlError(f"{artifact}: files in the archive differ from meta.json's file list")
        for name, data in files.items():
            if hashlib.sha256(data).hexdigest() != listed[name]["sha256"]:
                raise PicoctlError(f"{artifact}: {name}: sha256 does not match meta.json")
    if public_keys is not None:
        check_signature(meta, public_keys, str(release_dir))
    return meta


def board_envelope(meta: dict[str, Any]) -> dict[str, Any]:
    """What an offer carries for a board to verify: the exact signed text, its signature and key."""
    return {"signed": signing.signed_bytes(signing.document_body(meta)).decode(), "signature": meta["signature"],
            "key": meta.get("signed_by")}


def check_signature(meta: dict[str, Any], public_keys: str | Sequence[str], where: str) -> str:
    """The key of `public_keys` that signed `meta`; else PicoctlError saying why not (unsigned, signed
    by a key not in the set, a revoked one say, or a signature that does not verify)."""
    keys = [public_keys] if isinstance(public_keys, str) else list(public_keys)
    if not meta["signature"]:
        raise PicoctlError(f"{where}: meta.json is not signed")
    named = meta.get("signed_by")
    if named is not None and named not in keys:
        raise PicoctlError(f"{where}: signature does not verify under the trusted release keys: signed by "
                           f"{named[:16]}…, a key not in the set (revoked or unknown)")
    key = signing.verify_under(meta, keys)
    if key is None:
        raise PicoctlError(f"{where}: signature does not verify against the release public key")
    return key

