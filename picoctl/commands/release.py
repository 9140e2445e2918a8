"""`picoctl release build|verify`: signed release bundles for pi, picow and pico."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import config, release, signing
from ..errors import BadInput
from .output import add_json_flag, console, emit, err_console


def _build(args: argparse.Namespace) -> int:
    key = signing.load_private_key(Path(args.key)) if args.key else None
    meta = release.build(
        args.target,
        args.version,
        Path(args.source),
        Path(args.out),
        key_hex=key,
        rollout=args.rollout,
        artifact_base_url=args.artifact_base_url,
        mpy=args.mpy,
    )

    def render(m: dict) -> None:
        signed = "signed" if m["signature"] else "[yellow]unsigned[/]"
        console.print(f"[green]built[/] {m['target']} {m['version']} -> {args.out}/{m['artifact']} ({m['size']} bytes, {signed})")
        console.print(f"  sha256 {m['sha256']}")
        for f in m.get("files", []):
            console.print(f"  {f['name']:<32} {f['size']:>8}  {f['sha256'][:16]}")

    emit(args, meta, render)
    return 0


def _public_key(args: argparse.Namespace) -> str | None:
    if args.pubkey:
        return Path(args.pubkey).read_text().strip()
    if args.unsigned_ok:
        return None
    return config.load(args.config).release.public_key or None


def _verify(args: argparse.Namespace) -> int:
    meta = release.verify(Path(args.dir), _public_key(args))
    emit(args, meta, lambda m: console.print(f"[green]ok[/] {m['target']} {m['version']}: hashes and signature verify"))
    return 0


def _hub_client(args: argparse.Namespace):  # noqa: ANN202 - a HubClient
    from ..client import HubClient  # imported on use: httpx stays out of `picoctl --help`

    return HubClient.from_config(config.load(args.config))


def _render_published(answer: dict) -> None:
    m = answer["meta"]
    what = "published" if answer["added"] else "already published (same content)"
    console.print(f"[green]{what}[/] {m['target']} {m['version']} sha256 {m['sha256'][:16]}", highlight=False)


def _publish(args: argparse.Namespace) -> int:
    if args.artifacts_dir:
        from ..hub.blobs import BlobStore  # imported on use, as the client is

        folder = Path(args.artifacts_dir)
        meta = release.verify(Path(args.dir), config.load(args.config).release.public_key or None)
        try:
            BlobStore(folder).put_release(meta, Path(args.dir) / meta["artifact"])
        except OSError as exc:
            raise BadInput(f"{folder}: cannot write the artifacts: {exc.strerror}") from None
    with _hub_client(args) as client:
        emit(args, client.publish(Path(args.dir)), _render_published)
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..client import HubClient, HubError

    cfg = config.load(args.config)
    urls = args.url or cfg.release.import_urls.split()
    if not urls:
        raise BadInput("no URL given and release.import_urls in fleet.toml is empty")
    answers: list[dict] = []
    with HubClient.from_config(cfg) as client:
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
    rel = sub.add_parser("release", help="build, verify and publish releases")
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
    add_json_flag(b)
    b.set_defaults(func=_build)

    v = actions.add_parser("verify", help="check every hash and the signature of a release folder")
    v.add_argument("dir")
    v.add_argument("--pubkey", help="public key file (default: release.public_key from fleet.toml)")
    v.add_argument("--unsigned-ok", action="store_true", help="check hashes only")
    add_json_flag(v)
    v.set_defaults(func=_verify)

    p = actions.add_parser("publish", help="upload a built release to the hub (it checks signature and hashes)")
    p.add_argument("dir", help="release folder (meta.json and its artifact)")
    p.add_argument("--artifacts-dir", metavar="DIR",
                   help="also write its blobs into DIR, the folder a static host or CDN serves at hub.artifact_base_url")
    add_json_flag(p)
    p.set_defaults(func=_publish)

    i = actions.add_parser("import", help="have the hub fetch releases CI published (their meta.json URLs)")
    i.add_argument("url", nargs="*", help="URL of a release's meta.json, its artifact URL taken relative to it "
                                          "(default: release.import_urls from fleet.toml)")
    add_json_flag(i)
    i.set_defaults(func=_import)
