"""`picoctl release build|verify|smoke|publish|list|remove|import`: signed release bundles for pi, picow and pico."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import config, keyset, release, signing
from ..errors import BadInput, PicoctlError
from . import COMMANDS, hub_client
from .numbers import seconds
from .output import add_json_flag, console, emit, err_console, table

if TYPE_CHECKING:
    from ..smoke import Step


def _build(args: argparse.Namespace) -> int:
    key = signing.load_private_key(Path(args.key)) if args.key else None
    if args.smoke:
        from .. import smoke  # imported on use: the simulator stays out of `picoctl --help`

        if args.target != "picow":
            raise BadInput(f"--smoke: only picow releases boot in the simulator, not {args.target}")
        trace = smoke.load_trace(Path(args.smoke_readings)) if args.smoke_readings else None
        smoke.unix_port()
    elif args.smoke_from or args.smoke_readings or args.smoke_seconds is not None:
        raise BadInput("--smoke-from, --smoke-readings and --smoke-seconds go with --smoke")
    meta = release.build(
        args.target,
        args.version,
        Path(args.source),
        Path(args.out),
        key_hex=key,
        rollout=args.rollout,
        artifact_base_url=args.artifact_base_url,
        mpy=args.mpy,
        min_version=args.min_version,
        log=lambda line: err_console.print(line, highlight=False, soft_wrap=True),
    )
    result = None
    if args.smoke:
        result = smoke.run(Path(args.out), Path(args.smoke_from) if args.smoke_from else None, trace,
                           smoke.DEFAULT_SECONDS if args.smoke_seconds is None else args.smoke_seconds,
                           _smoke_log(args))
        meta = release.attest_smoke(Path(args.out), result.attestation(), key)

    def render(m: dict) -> None:
        signed = "signed" if m["signature"] else "[yellow]unsigned[/]"
        console.print(f"[green]built[/] {m['target']} {m['version']} -> {args.out}/{m['artifact']} ({m['size']} bytes, {signed})")
        console.print(f"  sha256 {m['sha256']}")
        for f in m.get("files", []):
            console.print(f"  {f['name']:<32} {f['size']:>8}  {f['sha256'][:16]}")
        if result is not None:
            _render_smoke(result.as_dict())

    emit(args, meta, render)
    if result is not None and not result.passed:
        raise PicoctlError(f"built {args.out}, its failed smoke recorded in meta.json: {result.reason}")
    return 0


def _public_key(args: argparse.Namespace) -> str | tuple[str, ...] | None:
    if args.pubkey:
        return Path(args.pubkey).read_text().strip()
    if args.unsigned_ok:
        return None
    return keyset.release_keys(config.load(args.config), "release verify")


def _verify(args: argparse.Namespace) -> int:
    meta = release.verify(Path(args.dir), _public_key(args))
    emit(args, meta, lambda m: console.print(f"[green]ok[/] {m['target']} {m['version']}: hashes and signature verify"))
    return 0


def _smoke(args: argparse.Namespace) -> int:
    from .. import smoke  # imported on use: the simulator stays out of `picoctl --help`

    trace = smoke.load_trace(Path(args.readings)) if args.readings else None
    result = smoke.run(Path(args.dir), Path(args.previous) if args.previous else None, trace, args.seconds,
                       _smoke_log(args))
    emit(args, result.as_dict(), _render_smoke)
    if not result.passed:
        raise PicoctlError(f"smoke of picow {result.version} failed: {result.reason}")
    return 0


def _smoke_log(args: argparse.Namespace) -> Callable[[Step], None]:
    """Each step of a smoke as it is reached (nothing with --json)."""
    def log(step: Step) -> None:
        if not args.json:
            console.print(f"{step.at:7.1f} s  [green]{step.name:<9}[/] {step.detail}", highlight=False)
    return log


def _render_smoke(r: dict) -> None:
    figures = [f"boot {r['boot_s']:.2f} s" if r["boot_s"] is not None else "",
               f"peak heap {r['peak_heap'] / 1024:.1f} KiB, least free {r['min_free'] / 1024:.1f} KiB"
               if r["peak_heap"] is not None else "",
               f"{r['steps_per_s']:.1f} steps/s" if r["steps_per_s"] is not None else ""]
    shown = ", ".join(f for f in figures if f)
    if r["error"]:
        err_console.print("the board's first traceback:", style="bold", highlight=False)
        err_console.print(r["error"], highlight=False, markup=False)
    if r["passed"]:
        console.print(f"[green]passed[/] picow {r['version']}: {shown}", highlight=False)
    elif shown:
        console.print(f"[red]failed[/] picow {r['version']}: {shown}", highlight=False)


def _render_published(answer: dict) -> None:
    m = answer["meta"]
    what = "published" if answer["added"] else "already published (same content)"
    console.print(f"[green]{what}[/] {m['target']} {m['version']} sha256 {m['sha256'][:16]}", highlight=False)


def _list(args: argparse.Namespace) -> int:
    with hub_client(config.load(args.config)) as client:
        rows = client.releases(args.target)

    def render(found: list[dict]) -> None:
        if not found:
            console.print("no releases published: build one with `picoctl release build`, then "
                          "`picoctl release publish DIR`", highlight=False)
            return
        table(f"{len(found)} release(s)", ("target", "version", "published (UTC)", "sha256", "smoke"), [
            (r["target"], r["version"], time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["published_at"])),
             r["sha256"][:12], release.smoke_summary(r["meta"])) for r in found])
        for r in found:
            if release.smoke_summary(r["meta"]) == "failed":
                console.print(f"{r['target']} {r['version']}: smoke failed: "
                              f"{r['meta'][release.SMOKE_FIELD].get('reason') or '-'}", highlight=False)

    emit(args, rows, render)
    return 0


def _publish(args: argparse.Namespace) -> int:
    if args.artifacts_dir:
        from ..hub.blobs import BlobStore  # imported on use, as the client is

        folder = Path(args.artifacts_dir)
        meta = release.verify(Path(args.dir), config.load(args.config).release.public_key or None)
        try:
            BlobStore(folder).put_release(meta, Path(args.dir) / meta["artifact"])
        except OSError as exc:
            raise BadInput(f"{folder}: cannot write the artifacts: {exc.strerror}") from None
    with hub_client(config.load(args.config)) as client:
        emit(args, client.publish(Path(args.dir)), _render_published)
    return 0


def _remove(args: argparse.Namespace) -> int:
    with hub_client(config.load(args.config)) as client:
        removed = client.remove_release(args.target, release.check_version(args.version))

    def render(r: dict) -> None:
        console.print(f"[yellow]removed[/] {r['target']} {r['version']} from the hub: {r['blobs_removed']} blob(s) "
                      f"only it used, {r['bytes_freed']} bytes freed; its rollouts and history stay",
                      highlight=False)

    emit(args, removed, render)
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..client import HubError

    cfg = config.load(args.config)
    urls = args.url or cfg.release.import_urls.split()
    if not urls:
        raise BadInput("no URL given and release.import_urls in fleet.toml is empty")
    answers: list[dict] = []
    with hub_client(cfg) as client:
        for url in urls:
            try:
                answers.append(client.import_release(url) | {"url": url})
            except HubError as exc:  # one bad URL does not keep the others from being imported
                answers.append({"url": url, "error": str(exc)})
    emit(args, answers, _render_imports)
    return 1 if any("error" in a for a in answers) else 0


def _render_imports(answers: list[dict]) -> None:
    for a in answers:
        if "error" in a:
            err_console.print(f"[red]not imported[/] {a['url']}: {a['error']}", highlight=False)
        else:
            _render_published(a)


def register(sub: argparse._SubParsersAction) -> None:
    rel = sub.add_parser("release", help=COMMANDS["release"])
    actions = rel.add_subparsers(dest="release_command", metavar="ACTION", required=True)

    b = actions.add_parser("build", help="build a signed release bundle")
    b.add_argument("--target", required=True, choices=release.TARGETS)
    b.add_argument("--version", required=True, help="semantic version, e.g. 1.4.0")
    b.add_argument("--source", required=True, help="source folder (or a .uf2 image for --target pico)")
    b.add_argument("--out", required=True, help="release folder to create (must not exist or be empty)")
    b.add_argument("--key", help="Ed25519 private key file (picoctl keys generate)")
    b.add_argument("--rollout", default="canary", choices=release.ROLLOUTS)
    b.add_argument("--artifact-base-url", help="URL the artifact will be published under")
    b.add_argument("--mpy", action="store_true", help="compile .py modules (not main.py/boot.py) with mpy-cross")
    b.add_argument("--min-version", help="signed downgrade floor: boards that take this release never install "
                                         "one below this version again")
    b.add_argument("--smoke", action="store_true",
                   help="picow: run `release smoke` on the build and record its result, signed, in meta.json")
    b.add_argument("--smoke-from", metavar="RELEASE_DIR", help="--smoke: the release the board runs before")
    b.add_argument("--smoke-readings", metavar="FILE", help="--smoke: heartbeat readings to replay")
    b.add_argument("--smoke-seconds", type=seconds, help="--smoke: how long the app must run (default: 20)")
    add_json_flag(b)
    b.set_defaults(func=_build)

    v = actions.add_parser("verify", help="check every hash and the signature of a release folder")
    v.add_argument("dir")
    v.add_argument("--pubkey", help="public key file (default: the release keys of fleet.toml's key set)")
    v.add_argument("--unsigned-ok", action="store_true", help="check hashes only")
    add_json_flag(v)
    v.set_defaults(func=_verify)

    sm = actions.add_parser("smoke", help="boot a picow release on a virtual Pico W through a whole update first")
    sm.add_argument("dir", help="the picow release folder to try")
    sm.add_argument("--from", dest="previous", metavar="RELEASE_DIR",
                    help="the picow release the board runs before (default: the bundled app)")
    sm.add_argument("--readings", metavar="FILE",
                    help="heartbeat readings to replay to the sensors (picoctl devices readings ID --json)")
    sm.add_argument("--seconds", type=seconds, default=20.0, help="how long the app must run (default: %(default)g)")
    add_json_flag(sm)
    sm.set_defaults(func=_smoke)

    p = actions.add_parser("publish", help="upload a built release to the hub (it checks signature and hashes)")
    p.add_argument("dir", help="release folder (meta.json and its artifact)")
    p.add_argument("--artifacts-dir", metavar="DIR",
                   help="also write its blobs into DIR, the folder a static host or CDN serves at hub.artifact_base_url")
    add_json_flag(p)
    p.set_defaults(func=_publish)

    ls = actions.add_parser("list", help="the releases published on the hub, with their smoke attestations")
    ls.add_argument("--target", choices=release.TARGETS)
    add_json_flag(ls)
    ls.set_defaults(func=_list)

    rm = actions.add_parser("remove", help="remove a release no device runs and no rollout needs, with the blobs "
                                           "only it used")
    rm.add_argument("target", choices=release.TARGETS)
    rm.add_argument("version")
    add_json_flag(rm)
    rm.set_defaults(func=_remove)

    i = actions.add_parser("import", help="have the hub fetch releases CI published (their meta.json URLs)")
    i.add_argument("url", nargs="*", help="URL of a release's meta.json, its artifact URL taken relative to it "
                                          "(default: release.import_urls from fleet.toml)")
    add_json_flag(i)
    i.set_defaults(func=_import)
