"""`picoctl rollout start|promote|halt|resume|rollback|status`: staged rollouts on the hub."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any, Callable

from .. import config, diagnostics, release
from ..errors import BadInput, PicoctlError
from ..protocol import ACTION_ACCEPTS, ROLLOUT_STATES
from ..rollout import Cohort, device_count, parse_stages
from . import COMMANDS, hub_client
from .numbers import count
from .output import add_json_flag, console, emit, table

if TYPE_CHECKING:
    from ..client import HubClient


# The states of the rollouts an action without an ID may pick (the active one first, else the newest).
DEFAULT_STATES = {**ACTION_ACCEPTS, "status": ROLLOUT_STATES}
DONE = {"promote": "promoted", "halt": "halted", "resume": "resumed", "rollback": "rolled back"}


def _canary_ids(value: str | None) -> list[str]:
    if value is None:
        return []
    ids = [i.strip() for i in value.split(",")]
    if not all(ids):
        raise BadInput(f"--canary {value!r}: expected comma-separated device ids")
    return ids


def _percent(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.rstrip("%"))
    except ValueError:
        raise BadInput(f"--percent {value!r}: expected a number above 0 and at most 100") from None


def _start(args: argparse.Namespace) -> int:
    release.check_version(args.version)
    cfg = config.load(args.config)
    stages = parse_stages(args.stages or cfg.rollout.stages, canary_ids=_canary_ids(args.canary),
                          device_type=args.device_type, percent=_percent(args.percent))
    halt = cfg.rollout.halt_after_failures if args.halt_after_failures is None else \
        device_count(args.halt_after_failures, "--halt-after-failures")
    promote = cfg.rollout.promote_after_successes if args.promote_after_successes is None else \
        device_count(args.promote_after_successes, "--promote-after-successes")
    with hub_client(cfg) as client:
        started = client.start_rollout(args.target, args.version, [s.to_dict() for s in stages], halt, promote)
    emit(args, started, _announce(f"started rollout {started.get('id')}"))
    return 0


def _resolve(client: HubClient, args: argparse.Namespace, action: str) -> dict[str, Any]:
    """The rollout named by ID, else the target's active one, else its newest in a state the action applies to."""
    if args.id is not None:
        return client.rollout(args.id)
    states = DEFAULT_STATES[action]
    mine = [r for r in client.rollouts() if r.get("target") == args.target and r.get("state") in states]
    if not mine:
        which = "" if action == "status" else " " + " or ".join(states)
        raise PicoctlError(f"no{which} rollout of {args.target}; give a rollout ID or start one")
    return max(mine, key=lambda r: (r["state"] == "active", r["id"]))


def _act(args: argparse.Namespace) -> int:
    with hub_client(config.load(args.config)) as client:
        target = _resolve(client, args, args.action)
        done = client.rollout_action(target["id"], args.action, getattr(args, "reason", "") or "")
    line = f"{DONE[args.action]} rollout {target['id']}"
    if args.action == "rollback":
        line += f": rollout {done.get('id')} offers {done.get('version')} to the devices that took {target['version']}"
    emit(args, done, _announce(line))
    return 0


def _status(args: argparse.Namespace) -> int:
    with hub_client(config.load(args.config)) as client:
        shown = _resolve(client, args, "status")
    emit(args, shown, _render)
    return 0


def _announce(line: str) -> Callable[[dict[str, Any]], None]:
    def render(r: dict[str, Any]) -> None:
        console.print(f"[green]{line}[/]", highlight=False)
        _render(r)

    return render


def _describe(stage: dict[str, Any]) -> str:
    return Cohort(ids=tuple(stage.get("ids") or ()), device_type=stage.get("device_type"),
                  percent=stage.get("percent"), channel=stage.get("channel")).describe()


def _devices(n: object) -> str:
    return f"{n} device{'' if n == 1 else 's'}"


def _render(r: dict[str, Any]) -> None:
    from rich.markup import escape  # device text (errors in reasons) is shown as text, never markup

    colour = {"active": "green", "halted": "red", "completed": "blue", "rolled_back": "yellow"}.get(str(r.get("state")), "")
    state = f"[{colour}]{r.get('state')}[/]" if colour else str(r.get("state"))
    console.print(f"rollout {r.get('id')}  {r.get('kind', 'update')} {r.get('target')} "
                  f"{r.get('previous_version') or '-'} -> {r.get('version')}  {state}", highlight=False)
    if r.get("reason"):
        console.print(f"reason    {escape(r['reason'])}", highlight=False)
    for f in r.get("failures") or []:  # each device that failed, with why (`picoctl devices show ID` for more)
        console.print(f"[red]failed[/]    {escape(f['device_id'])} {escape(f['reason'])}", highlight=False)
    for f in r.get("retrying") or []:  # each transient failure, offered again after the hub's backoff
        when = diagnostics.retry_note(f.get("retry_at"), time.time())
        console.print(f"[yellow]retrying[/]  {escape(f['device_id'])} failed: {escape(f['detail'] or 'no detail')}"
                      f"{f' ({when})' if when else ''}", highlight=False)
    halt, promote = r.get("halt_after_failures"), r.get("promote_after_successes")  # counts of devices, 0: off
    console.print(f"halt {f'after {_devices(halt)} failed' if halt else 'never'}; "
                  f"promote {f'after {_devices(promote)} of a stage committed' if promote else 'by hand'}", highlight=False)
    current = r.get("stage_index", 0)
    rows = [("▶" if i == current else "", s.get("name"), _describe(s)) for i, s in enumerate(r.get("stages") or [])]
    table("stages", ("", "stage", "cohort"), rows)
    n = r.get("counts")
    if isinstance(n, dict):
        console.print(", ".join(f"{k} {n.get(k, 0)}" for k in ("eligible", "offered", "downloading", "trial",
                                                                "committed", "failed", "retrying")), highlight=False)
        console.print(f"this stage: {n.get('stage_committed', 0)} of {n.get('stage_devices', 0)} new device(s) "
                      f"committed; {n.get('current', 0)} already on {r.get('version')}", highlight=False)


def register(sub: argparse._SubParsersAction) -> None:
    ro = sub.add_parser("rollout", help=COMMANDS["rollout"])
    actions = ro.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)

    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--target", default="picow", choices=release.BOARD_TARGETS, help="device type (default: %(default)s)")
        add_json_flag(p)

    s = actions.add_parser("start", help="offer a published release to the fleet, stage by stage")
    s.add_argument("version", metavar="VERSION", help="a release published on the hub, e.g. 1.4.0")
    cohort = s.add_mutually_exclusive_group()
    cohort.add_argument("--canary", metavar="ID,...", help="the canary stage is these devices")
    cohort.add_argument("--percent", metavar="N",
                        help="the canary stage is N%% of devices, by a stable hash of their id")
    cohort.add_argument("--device-type", metavar="T", help="the canary stage is the devices of type T")
    s.add_argument("--stages", metavar="SPEC",
                   help="e.g. canary,10%%,50%%,100%% (default: rollout.stages from fleet.toml; without "
                        "--canary/--percent/--device-type the canary is the devices on the canary channel)")
    s.add_argument("--halt-after-failures", metavar="N",
                   help="halt once N devices failed (0: never; default from fleet.toml)")
    s.add_argument("--promote-after-successes", metavar="N",
                   help="promote once N devices of a stage committed (0: by hand; default from fleet.toml)")
    target(s)
    s.set_defaults(func=_start)

    helps = {"promote": "move an active rollout to its next stage", "halt": "stop new offers at once",
             "resume": "resume a halted rollout",
             "rollback": "offer the previous release to every device that took this one"}
    for action, text in helps.items():
        a = actions.add_parser(action, help=text)
        a.add_argument("id", metavar="ID", nargs="?", type=count,
                       help="rollout id (default: the target's current rollout)")
        if action in ("halt", "rollback"):
            a.add_argument("--reason", metavar="R", default="", help="why, for the audit log")
        target(a)
        a.set_defaults(func=_act, action=action)

    st = actions.add_parser("status", help="a rollout's stages, cohort and counts")
    st.add_argument("id", metavar="ID", nargs="?", type=count, help="rollout id (default: the target's current rollout)")
    target(st)
    st.set_defaults(func=_status)
