"""The form that starts a rollout: release, canary cohort (ids, type, percent or the canary channel), thresholds.

Checked with picoctl.rollout.parse_stages, the same rules as `picoctl rollout start`, before anything
is sent; a bad field is named in the form and nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select

from .modals import FormScreen
from ...errors import BadInput
from ...rollout import parse_stages

COHORTS = (("canary channel", "channel"), ("device ids", "ids"), ("device type", "type"), ("percent", "percent"))


@dataclass(frozen=True)
class CanaryRequest:
    target: str
    version: str
    stages: list[dict[str, Any]]
    halt_after_failures: int
    promote_after_successes: int

    def describe(self) -> str:
        return f"{self.target} {self.version}: stages " + ", ".join(s["name"] for s in self.stages)


def _count(text: str, what: str) -> int:
    try:
        n = int(text.strip())
    except ValueError:
        n = -1
    if n < 0:
        raise BadInput(f"{what}: expected a whole number of devices (0 or more), got {text!r}")
    return n


def build_request(release: str | None, cohort: str, value: str, stages: str, halt: str, promote: str) -> CanaryRequest:
    """The rollout the form describes, or BadInput naming the first bad field."""
    if not release or "/" not in release:
        raise BadInput("release: pick a published release")
    target, version = release.split("/", 1)
    value = value.strip()
    ids = [i.strip() for i in value.split(",")] if cohort == "ids" else []
    if cohort == "ids" and not all(ids):
        raise BadInput("cohort: expected comma-separated device ids")
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
    return CanaryRequest(target, version, [s.to_dict() for s in parsed], _count(halt, "halt after failures"),
                         _count(promote, "promote after successes"))


class CanaryForm(FormScreen[CanaryRequest | None]):
    ENTER_MOVES = False  # enter in any field starts the rollout

    def __init__(self, releases: list[str], stages: str, halt: int, promote: int) -> None:
        super().__init__()
        self.releases, self.stages, self.halt, self.promote = releases, stages, halt, promote

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label("Start a rollout", classes="dialog-title")
            yield Select([(r, r) for r in self.releases], prompt="release", id="release",
                         value=self.releases[-1] if self.releases else Select.BLANK)
            with Horizontal(classes="row"):
                yield Select(list(COHORTS), value="channel", allow_blank=False, id="cohort")
                yield Input(placeholder="ids a,b / type / 10%", id="cohort-value")
            with Horizontal(classes="row"):
                yield Label("stages", classes="field")
                yield Input(self.stages, id="stages")
            with Horizontal(classes="row"):
                yield Label("halt after", classes="field")
                yield Input(str(self.halt), id="halt", classes="num")
                yield Label("promote after", classes="field")
                yield Input(str(self.promote), id="promote", classes="num")
            yield Label("", id="form-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="start")
                yield Button("Cancel (esc)", id="cancel")

    def request(self) -> CanaryRequest:
        release = self.query_one("#release", Select).value
        return build_request(None if release is Select.BLANK else str(release),
                             str(self.query_one("#cohort", Select).value),
                             self.query_one("#cohort-value", Input).value, self.query_one("#stages", Input).value,
                             self.query_one("#halt", Input).value, self.query_one("#promote", Input).value)

    def submit(self) -> None:
        try:
            self.dismiss(self.request())
        except BadInput as exc:
            self.query_one("#form-error", Label).update(f"✖ {exc}")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_submit()
        else:
            self.dismiss(None)
