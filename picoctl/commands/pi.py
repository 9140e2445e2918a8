"""`picoctl pi deploy|rollback|status|update`: releases of the Pi app on this machine."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from .. import config
from ..errors import PicoctlError
from ..progress import Progress
from ..protocol import CHANNELS
from . import COMMANDS
from .numbers import seconds
from .output import add_json_flag, console, emit, err_console, progress_bar

if TYPE_CHECKING:
    from .. import pideploy


def _log(line: str) -> None:
    err_console.print(f"[dim]·[/] {line}", highlight=False)


def _conclude(args: argparse.Namespace, result: pideploy.DeployResult) -> int:
    def render(r: pideploy.DeployResult) -> None:
        colour = "green" if r.ok else "red"
        console.print(f"[{colour}]{r.op} {'ok' if r.ok else 'failed'}[/] in {r.duration_s:.1f}s: {r.reason}", highlight=False)

    if not result.ok and not args.json:
        raise PicoctlError(f"{result.op} of {result.to_version} failed: {result.reason}")
    emit(args, dataclasses.asdict(result), lambda _: render(result))
    return 0 if result.ok else 1


def _deploy(args: argparse.Namespace) -> int:
    from .. import pideploy  # imported on use: httpx stays out of `picoctl --help`

    cfg = config.load(args.config)
    with progress_bar("pi deploy") as progress:
        result = pideploy.deploy(cfg, args.source, progress, _log, sha256=args.sha256, wait_s=args.wait)
    return _conclude(args, result)


def _rollback(args: argparse.Namespace) -> int:
    from .. import pideploy  # imported on use: httpx stays out of `picoctl --help`

    cfg = config.load(args.config)
    result = pideploy.rollback(cfg, args.to, Progress("pi rollback"), _log, wait_s=args.wait)
    return _conclude(args, result)


def _update(args: argparse.Namespace) -> int:
    from .. import pideploy  # imported on use: httpx stays out of `picoctl --help`

    cfg = config.load(args.config)
    with progress_bar("pi update") as progress:
        result = pideploy.update(cfg, args.channel, progress, _log, wait_s=args.wait)
    return _conclude(args, result)


def _status(args: argparse.Namespace) -> int:
    from .. import pideploy  # imported on use: httpx stays out of `picoctl --help`

    st = pideploy.status(config.load(args.config), _log)

    def render(_: dict) -> None:
        s = st
        health = {True: "[green]healthy[/]", False: "[red]unhealthy[/]", None: "[dim]-[/]"}[s.healthy]
        console.print(f"root      {s.root}")
        console.print(f"current   {s.current or '-'}    previous {s.previous or '-'}")
        console.print(f"releases  {', '.join(s.releases) or '-'}")
        console.print(f"health    {health} ({s.health})", highlight=False)
        if s.busy:
            console.print(f"[yellow]busy[/]      {s.busy}")
        if s.queued_events:
            console.print(f"[yellow]{s.queued_events} event(s)[/] queued until the hub is reachable")

    emit(args, dataclasses.asdict(st), render)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    pi = sub.add_parser("pi", help=COMMANDS["pi"])
    actions = pi.add_subparsers(dest="pi_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--wait", type=seconds, default=0.0, metavar="SECONDS",
                       help="wait this long for another deploy to end instead of refusing")
        add_json_flag(p)

    d = actions.add_parser("deploy", help="install a release, switch to it, restart, health-check (rolls back on failure)")
    d.add_argument("source", metavar="SOURCE", help="release folder, its meta.json (path or URL) or an artifact URL")
    d.add_argument("--sha256", metavar="HEX", help="also require the artifact to have this sha256")
    common(d)
    d.set_defaults(func=_deploy)

    r = actions.add_parser("rollback", help="switch back to the previous release (or --to one on disk)")
    r.add_argument("--to", metavar="VERSION", help="a release on disk (default: the previous one)")
    common(r)
    r.set_defaults(func=_rollback)

    s = actions.add_parser("status", help="current and previous release, releases on disk, health now")
    add_json_flag(s)
    s.set_defaults(func=_status)

    u = actions.add_parser("update", help="deploy the published release when it is newer (for the timer)")
    u.add_argument("--channel", choices=CHANNELS, help="default: pi.channel from fleet.toml")
    common(u)
    u.set_defaults(func=_update)
