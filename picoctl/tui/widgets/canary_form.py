"""The form that starts a rollout: release, canary cohort (ids, type, percent or the canary channel), thresholds.

Checked with picoctl.rollout.parse_stages, the same rules as `picoctl rollout start`, as it is typed:
a bad field is named in the form and nothing is sent. A live preview says which devices each stage
reaches (by the rollout policy, picoctl.rollout.stage_of). The form starts the rollout itself, so a
refusal from the hub (a rollout already active: 409) is shown in it and the form stays open.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Collection, Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from .modals import Confirm, FormScreen
from ...errors import BadInput, PicoctlError
from ...rollout import DeviceInfo, RolloutInfo, device_count, parse_stages, some, stage_of, stages_from_dicts

COHORTS = (("canary channel", "channel"), ("device ids", "ids"), ("device type", "type"), ("percent", "percent"))
PREVIEW_NAMES = 5  # devices the preview names before it only counts


@dataclass(frozen=True)
class CanaryRequest:
    target: str
    version: str
    stages: list[dict[str, Any]]
    halt_after_failures: int
    promote_after_successes: int

    def describe(self) -> str:
        return f"{self.target} {self.version}: stages " + ", ".join(s["name"] for s in self.stages)


def build_request(release: str | None, cohort: str, value: str, stages: str, halt: str, promote: str,
                  known: Collection[str] | None = None) -> CanaryRequest:
    """The rollout the form describes, or BadInput naming the first bad field; `known`: the device ids
    the hub has, which a cohort of ids must be among."""
    if not release or "/" not in release:
        raise BadInput("release: pick a published release")
    target, version = release.split("/", 1)
    value = value.strip()
    ids = [i.strip() for i in value.split(",")] if cohort == "ids" else []
    if cohort == "ids" and not all(ids):
        raise BadInput("cohort: expected comma-separated device ids")
    unknown = [i for i in dict.fromkeys(ids) if known is not None and i not in known]
    if unknown:
        raise BadInput(f"cohort: no device {', '.join(unknown)} on the hub")
    if cohort == "type" and not value:
        raise BadInput("cohort: expected a device type")
    percent = None
    if cohort == "percent":
        try:
            percent = float(value.rstrip("%"))
        except ValueError:
            raise BadInput(f"cohort: expected a percentage above 0 and at most 100, got {value!r}") from None
    parsed = parse_stages(stages.strip() or None, canary_ids=ids, device_type=value if cohort == "type" else None,
                          percent=percent)
    return CanaryRequest(target, version, [s.to_dict() for s in parsed], device_count(halt, "halt after failures"),
                         device_count(promote, "promote after successes"))


def reach(req: CanaryRequest, devices: Sequence[DeviceInfo]) -> list[list[str]]:
    """For each stage of `req`, the ids of the devices of its target that stage adds (the policy's stage_of)."""
    stages = stages_from_dicts(req.stages)
    last = RolloutInfo(0, req.target, req.version, None, "active", "update", len(stages) - 1, stages,
                       req.halt_after_failures, req.promote_after_successes, 0.0)
    out: list[list[str]] = [[] for _ in stages]
    for d in sorted(devices, key=lambda d: d.id):
        i = stage_of(last, d)
        if i is not None:
            out[i].append(d.id)
    return out


def preview(req: CanaryRequest, devices: Sequence[DeviceInfo]) -> str:
    """`canary reaches 2 devices: gh-01, gh-02 · then 10% +1, 50% +2, 100% +1 · 6 of 6 picow devices in all`."""
    added = reach(req, devices)
    first = added[0]
    named = some(first, PREVIEW_NAMES)
    line = f"{req.stages[0]['name']} reaches {len(first)} device{'' if len(first) == 1 else 's'}" + \
        (f": {named}" if first else " (none: the rollout would wait there)")
    later = [f"{s['name']} +{len(ids)}" for s, ids in zip(req.stages[1:], added[1:], strict=True)]
    if later:
        line += " · then " + ", ".join(later)
    on_it = Counter(d.version == req.version for d in devices if d.type == req.target)
    total = sum(on_it.values())
    line += f" · {sum(map(len, added))} of {total} {req.target} device{'' if total == 1 else 's'} in all"
    return line + (f" ({on_it[True]} already on {req.version})" if on_it[True] else "")


class CanaryForm(FormScreen[CanaryRequest | None]):
    """Dismissed with the request once the hub started the rollout; `ask` gives the question to confirm
    first, if any (title, body, yes); `start` sends the request to the hub."""

    ENTER_MOVES = False  # enter in any field starts the rollout

    def __init__(self, releases: list[str], stages: str, halt: int, promote: int, devices: Sequence[DeviceInfo],
                 start: Callable[[CanaryRequest], Awaitable[Any]],
                 ask: Callable[[CanaryRequest], tuple[str, str, str] | None] = lambda _: None) -> None:
        super().__init__()
        self.releases, self.stages, self.halt, self.promote = releases, stages, halt, promote
        self.devices, self.start, self.ask = devices, start, ask

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label("Start a rollout", classes="dialog-title")
            with Horizontal(classes="row"):
                yield Label("release", classes="field")
                yield Select([(Text(r), r) for r in self.releases], prompt="release", id="release",
                             value=self.releases[-1] if self.releases else Select.BLANK)
            with Horizontal(classes="row"):
                yield Label("first stage", classes="field")
                yield Select(list(COHORTS), value="channel", allow_blank=False, id="cohort")
                yield Input(placeholder="ids a,b / type / 10%", id="cohort-value")
            with Horizontal(classes="row"):
                yield Label("stages", classes="field")
                yield Input(self.stages, placeholder="canary,10%,50%,100%", id="stages")
            with Horizontal(classes="row"):
                yield Label("halt after", classes="field")
                yield Input(str(self.halt), id="halt", classes="num")
                yield Label("failed devices (0: never halts)", classes="unit")
            with Horizontal(classes="row"):
                yield Label("promote after", classes="field")
                yield Input(str(self.promote), id="promote", classes="num")
                yield Label("committed devices of a stage (0: by hand)", classes="unit")
            yield Static("", id="form-preview")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="start")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.show_preview()

    def request(self) -> CanaryRequest:
        release = self.query_one("#release", Select).value
        return build_request(None if release is Select.BLANK else str(release),
                             str(self.query_one("#cohort", Select).value),
                             self.query_one("#cohort-value", Input).value, self.query_one("#stages", Input).value,
                             self.query_one("#halt", Input).value, self.query_one("#promote", Input).value,
                             known={d.id for d in self.devices})

    def note(self, text: str, error: bool = False) -> None:
        self.query_one("#form-preview", Static).update(Text(f"✖ {text}" if error else text,
                                                            style="bold red" if error else ""))

    @on(Input.Changed)
    @on(Select.Changed)
    def show_preview(self) -> None:
        try:
            self.note(preview(self.request(), self.devices))
        except BadInput as exc:
            self.note(str(exc), error=True)

    def submit(self) -> None:
        try:
            req = self.request()
        except BadInput as exc:
            self.note(str(exc), error=True)
            return
        self.run_worker(self._go(req), exclusive=True, group="start", name="start rollout")

    async def _go(self, req: CanaryRequest) -> None:
        question = self.ask(req)
        if question is not None and not await self.app.push_screen_wait(Confirm(*question)):
            return
        try:
            await self.start(req)
        except PicoctlError as exc:  # the hub's refusal, or the hub out of reach: the form stays to fix or cancel
            self.note(str(exc), error=True)
            return
        self.dismiss(req)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_submit()
        else:
            self.dismiss(None)
