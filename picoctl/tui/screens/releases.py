"""Releases and rollouts: releases per target, the active rollout's stage and counts, and its verbs."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, Label, ProgressBar, Static

from .. import keymap
from ...errors import BadInput
from ...protocol import ACTION_ACCEPTS
from ...release import SMOKE_FIELD
from ...rollout import TOOK_RELEASE, DeviceInfo, RolloutInfo, some, stage_of, stages_from_dicts
from ..format import FAILED, PHASE_STYLE, ROLLOUT_STYLE, plural, stamp
from ..model import COUNT_KEYS, Device, Event, Release, Rollout
from ..widgets.canary_form import CanaryForm, CanaryRequest
from ..widgets.modals import Confirm
from ..widgets.table import KeyedTable
from .base import ModelScreen

RELEASE_COLUMNS = (("target", "TARGET", 6), ("version", "VERSION", 9), ("published", "PUBLISHED", 16),
                   ("devices", "DEVICES", 7), ("sha", "SHA256", 12), ("smoke", "SMOKE", 8))
ROLLOUT_COLUMNS = (("id", "#", 3), ("kind", "KIND", 8), ("target", "TARGET", 6), ("version", "VERSION", 15),
                   ("stage", "STAGE", 8), ("state", "STATE", 11), ("done", "DONE", 9))

NO_RELEASES = ("No releases yet. Build one with `picoctl release build --target picow --version V --source DIR "
               "--out OUT`, publish it with `picoctl release publish OUT`, then n here starts its rollout.")


NAMED = 4  # devices a confirmation names, the rest counted


def confirmation(verb: str, r: Rollout, devices: list[Device]) -> tuple[str, str]:
    """(title, body) of the confirmation of `verb` on `r`: what it does to which devices, counted from the
    devices as they are now and the rollout policy, not from the rollout's counters."""
    what = f"{r.target} {r.version}"
    if verb == "promote":
        nxt = r.stages[r.stage_index + 1]["name"] if r.stage_index + 1 < len(r.stages) else "(last)"
        n = joining(r, devices)
        return f"Promote rollout #{r.id}?", f"Stage {nxt} opens: {what} will be offered to {plural(n, 'more device')}."
    if verb == "halt":
        now, later = waiting(r, devices)
        more = f"; {plural(len(later), 'more device')} in the next stages will not get it either" if later else ""
        return (f"Halt rollout #{r.id}?", f"No new offers of {what}: {plural(len(now), 'device')} of this stage not yet "
                f"on it stop getting it{more}. Devices already updating finish.")
    if verb == "resume":
        return f"Resume rollout #{r.id}?", f"Offers of {what} start again at stage {r.stage_name}."
    took = sorted(d.id for d in devices if d.offer and d.offer.rollout_id == r.id and d.offer.phase in TOOK_RELEASE)
    restored = [d.id for d in devices if d.id in took and d.offer and d.offer.phase == "rolled_back"]
    body = (f"{plural(len(took), 'device')} took {what}" + (f" ({some(took, NAMED)})" if took else "") +
            f" and will be offered {r.previous_version or 'the previous release'} again")
    if restored:
        body += (f"; {some(sorted(restored), NAMED)} already restored {'itself' if len(restored) == 1 else 'themselves'}, "
                 f"{plural(len(took) - len(restored), 'device')} still to go back")
    return f"Roll back rollout #{r.id}?", body + "."


def policy(r: Rollout) -> RolloutInfo | None:
    """The rollout as picoctl.rollout sees it; None for one whose stages the policy would refuse."""
    try:
        return RolloutInfo(r.id, r.target, r.version, r.previous_version, r.state, r.kind, r.stage_index,
                           stages_from_dicts(r.stages), r.halt_after_failures, r.promote_after_successes,
                           r.created_at or 0.0, r.reason)
    except (BadInput, ValueError):
        return None


def device_info(d: Device) -> DeviceInfo:
    return DeviceInfo(d.id, d.type, d.channel, d.version, 0, d.last_seen)


def joining(r: Rollout, devices: Iterable[Device]) -> int:
    """Devices not on the version that the next stage adds to those the rollout covers now."""
    info = policy(r)
    if info is None or info.last_stage:
        return 0
    nxt = dataclasses.replace(info, stage_index=info.stage_index + 1)
    return sum(1 for d in devices if d.version != r.version and stage_of(nxt, device_info(d)) == nxt.stage_index)


def waiting(r: Rollout, devices: Iterable[Device]) -> tuple[list[str], list[str]]:
    """Devices not on the rollout's version that its current stage covers, and those only a later stage does."""
    info = policy(r)
    if info is None:
        return [], []
    last = dataclasses.replace(info, stage_index=len(info.stages) - 1)
    now: list[str] = []
    later: list[str] = []
    for d in devices:
        if d.version == r.version:
            continue
        first = stage_of(last, device_info(d))
        if first is not None:
            (now if first <= r.stage_index else later).append(d.id)
    return sorted(now), sorted(later)


def failing(r: Rollout, devices: Iterable[Device]) -> list[tuple[str, str]]:
    """(device, phase) of the devices whose offer of `r` failed or was rolled back."""
    return sorted((d.id, d.offer.phase) for d in devices
                  if d.offer and d.offer.rollout_id == r.id and d.offer.failed)


def counts_text(r: Rollout) -> Text:
    t = Text()
    for k in COUNT_KEYS + (("retrying",) if r.counts.get("retrying") else ()):
        n = r.counts.get(k, 0)
        t.append(f"{k} ", style="dim")
        t.append(f"{n}  ", style=FAILED if k == "failed" and n else "bold")
    return t


def smoke_verdict(r: Release, here: dict | None) -> tuple[bool | None, str]:
    """(passed, why not) of a release's smoke: run here if it was, else its signed attestation;
    passed is None for a release never smoked."""
    if here is not None:
        return here["passed"], f"failed its smoke here: {here['reason']}"
    record = r.meta.get(SMOKE_FIELD)
    if not isinstance(record, dict):
        return None, "has no smoke attestation and was not smoked here"
    return record.get("passed") is True, f"failed its signed smoke: {record.get('reason') or '-'}"


def smoke_cell(r: Release, here: dict | None) -> Text:
    passed, _ = smoke_verdict(r, here)
    if passed is None:
        return Text("-", style="dim")
    return Text(("✔" if passed else "✖") + (" here" if here is not None else " signed"),
                style="green" if passed else FAILED)


class ReleasesScreen(ModelScreen):
    MODE = "releases"
    BINDINGS = [*keymap.RELEASES]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.smoked: dict[str, dict] = {}  # results of the smokes run from this screen, by release key

    def compose(self) -> ComposeResult:
        yield from self.top()
        yield Static(id="rollout-info", markup=False)
        yield ProgressBar(total=1, show_eta=False, id="rollout-progress")
        yield Label("releases", classes="section")
        yield KeyedTable(RELEASE_COLUMNS, id="releases")
        yield Static(NO_RELEASES, id="releases-empty", classes="empty", markup=False)
        yield Label("rollouts", classes="section")
        yield KeyedTable(ROLLOUT_COLUMNS, id="rollouts")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#releases").focus()

    def sync(self) -> None:
        self._releases()
        self._rollouts()

    def apply_changes(self, changed: set[str], removed: set[str], events: list[Event], topics: set[str]) -> None:
        if topics & {"releases", "devices", "versions"}:
            self._releases()
        if "rollouts" in topics:
            self._rollouts()

    def _releases(self) -> None:
        table = self.query_one("#releases", KeyedTable)
        on: dict[str, int] = {}
        for d in self.model.devices.values():
            on[f"{d.type}/{d.version}"] = on.get(f"{d.type}/{d.version}", 0) + 1
        for key, r in sorted(self.model.releases.items(), key=lambda kv: (kv[1].target, kv[1].published_at or 0)):
            table.put(key, (r.target, r.version, stamp(r.published_at), on.get(key, 0), r.sha256[:12] or "-",
                            smoke_cell(r, self.smoked.get(key)) if r.target == "picow" else ""))
        table.keep_only(self.model.releases)
        self.query_one("#releases-empty").display = not self.model.releases

    def _rollouts(self) -> None:
        table = self.query_one("#rollouts", KeyedTable)
        for r in sorted(self.model.rollouts.values(), key=lambda r: -r.id):
            done, total = r.progress
            table.put(str(r.id), (r.id, r.kind, r.target, f"{r.previous_version or '-'} → {r.version}",
                                  r.stage_name, Text(r.state, style=ROLLOUT_STYLE.get(r.state, "")), f"{done}/{total}"))
        table.keep_only(str(i) for i in self.model.rollouts)
        self._active()

    def _active(self) -> None:
        r = self.model.active_rollout()
        info = self.query_one("#rollout-info", Static)
        bar = self.query_one("#rollout-progress", ProgressBar)
        if r is None:
            info.update(Text("no active rollout: n starts one", style="dim"))
            bar.update(total=1, progress=0)
            return
        t = Text()
        t.append(f"rollout #{r.id} ", style="bold")
        t.append(f"{r.kind} {r.target} {r.previous_version or '-'} → {r.version}  stage ")
        t.append(f"{r.stage_name} ({r.stage_index + 1}/{len(r.stages)})", style="bold")
        t.append("  ")
        why = r.why()
        t.append(f"{r.state}:" if why else r.state, style=ROLLOUT_STYLE.get(r.state, ""))
        if why:
            t.append(f" {why}", style=FAILED)
            t.append("  w: why", style="dim")
        elif r.reason and r.state != "active":
            t.append(f"  {r.reason}", style="italic")
        t.append("\n")
        t.append_text(counts_text(r))
        failed = failing(r, self.model.devices.values())
        if failed:
            t.append("\nfailed: ", style=FAILED)
            for i, (did, phase) in enumerate(failed[:6]):
                t.append(", " if i else "")
                t.append(did, style="bold")
                t.append(f" {phase}", style=PHASE_STYLE.get(phase, ""))
            if len(failed) > 6:
                t.append(f" and {len(failed) - 6} more", style="dim")
        info.update(t)
        done, total = r.progress
        bar.update(total=max(total, 1), progress=done)

    # --- verbs -------------------------------------------------------------------------------
    def action_why(self) -> None:
        r = self.model.active_rollout()
        if r is None or not r.failures:
            self.fail("no device has failed the rollout")
            return
        self.app.open_device(r.failures[0]["device_id"])

    def action_new_canary(self) -> None:
        cfg = self.app.cfg
        releases = sorted(k for k, r in self.model.releases.items() if r.target != "pi")
        if not releases:
            self.fail("no release published for a device target: publish one with `picoctl release publish`")
            return

        devices = [device_info(d) for d in self.model.devices.values()]
        self.app.push_screen(CanaryForm(releases, cfg.rollout.stages, cfg.rollout.halt_after_failures,
                                        cfg.rollout.promote_after_successes, devices, self.start, self.smoke_question))

    def smoke_question(self, req: CanaryRequest) -> tuple[str, str, str] | None:
        """What to ask before starting a rollout of a picow release that has not passed a smoke, else None."""
        key = f"{req.target}/{req.version}"
        r = self.model.releases.get(key)
        passed, why = smoke_verdict(r, self.smoked.get(key)) if r is not None else (True, "")
        if req.target != "picow" or passed:
            return None
        return (f"Canary {req.target} {req.version} without a passing smoke?",
                f"It {why}. Esc, then s on the release boots it on a virtual Pico W with the canaries' readings first.",
                "Canary anyway")

    def action_smoke(self) -> None:
        key = self.query_one("#releases", KeyedTable).selected_key()
        r = self.model.releases.get(key or "")
        if r is None or r.target != "picow":
            self.fail("select a picow release to smoke: only Pico W apps boot on the virtual board")
            return
        canaries = [d.id for d in self.model.devices.values() if d.type == "picow" and d.channel == "canary"]
        self.notify(f"smoke of picow {r.version} on a virtual Pico W with the readings of "
                    f"{', '.join(canaries) or 'no device'}: about half a minute…")
        self.smoke(r, canaries)

    def action_remove_release(self) -> None:
        r = self.model.releases.get(self.query_one("#releases", KeyedTable).selected_key() or "")
        if r is None:
            self.fail("select a release to remove")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._remove(r), name=f"remove {r.key}", group="release-action", exclusive=True,
                                exit_on_error=False)

        self.app.push_screen(Confirm(
            f"Remove {r.target} {r.version} from the hub?",
            "Its artifact and the files no other release uses are deleted from the hub; its rollouts and "
            "history stay. The hub refuses while a device runs it or a rollout may still move devices to or "
            "from it. To offer it again, publish it again.", "Remove"), answered)

    async def _remove(self, r: Release) -> None:
        done = await self.source.remove_release(r.target, r.version)
        self.model.apply("release_removed", done)
        self.notify(f"removed {r.target} {r.version}: {done['blobs_removed']} blob(s), {done['bytes_freed']} bytes freed")

    @work(thread=True, exclusive=True, exit_on_error=False, group="smoke", name="smoke")
    def smoke(self, r: Release, canaries: list[str]) -> None:
        """A refusal or failure raised here is shown as a toast (ModelScreen)."""
        result = self.source.smoke(r.version, canaries)
        self.app.call_from_thread(self._smoked, r.key, result)

    def _smoked(self, key: str, result: dict) -> None:
        self.smoked[key] = result
        self._releases()
        if result["passed"]:
            self.notify(f"smoke of {key} passed: peak heap {(result['peak_heap'] or 0) / 1024:.0f} KiB, "
                        f"{result['steps_per_s'] or 0:.1f} app steps/s")
        else:
            self.fail(f"smoke of {key} failed: {result['reason']}")

    async def start(self, req: CanaryRequest) -> None:
        """Start the rollout on the hub (from the form, which shows a refusal)."""
        r = await self.source.start_rollout(req.target, req.version, req.stages, req.halt_after_failures,
                                            req.promote_after_successes)
        self.notify(f"started rollout #{r.get('id')}: {req.describe()}")
        await self.app.refresh_rollouts()

    def _target(self, verb: str) -> Rollout | None:
        """The selected rollout if the verb applies to it, else the newest one it applies to."""
        key = self.query_one("#rollouts", KeyedTable).selected_key() if self.focused is self.query_one("#rollouts") else None
        chosen = self.model.rollouts.get(int(key)) if key else None
        if chosen is not None and chosen.state in ACTION_ACCEPTS[verb]:
            return chosen
        fit = [r for r in self.model.rollouts.values() if r.state in ACTION_ACCEPTS[verb]]
        return max(fit, key=lambda r: r.id) if fit else None

    def action_rollout(self, verb: str) -> None:
        r = self._target(verb)
        if r is None:
            self.fail(f"no {' or '.join(ACTION_ACCEPTS[verb])} rollout to {verb}")
            return
        title, body = confirmation(verb, r, list(self.model.devices.values()))

        def answered(yes: bool | None) -> None:
            if yes:
                self.act(r.id, verb)

        self.app.push_screen(Confirm(title, body, verb.capitalize()), answered)

    def act(self, rollout_id: int, verb: str) -> None:
        self.run_worker(self._act(rollout_id, verb), name=f"{verb} rollout #{rollout_id}", group="rollout-action",
                        exclusive=True, exit_on_error=False)

    async def _act(self, rollout_id: int, verb: str) -> None:
        result = await self.source.rollout_action(rollout_id, verb, "from the picoctl TUI")
        self.model.apply("rollout", result)
        self.notify(f"{verb}: rollout #{rollout_id}")
        await self.app.refresh_rollouts()
