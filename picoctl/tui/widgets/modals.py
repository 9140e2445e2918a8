"""Modal screens: confirmation of a destructive action, a one-field prompt, the help list, one event."""

from __future__ import annotations

import json
import time
from typing import Callable, TypeVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Select, Static

from .. import keymap
from ..model import Event
from ..text import visible

T = TypeVar("T")


class Confirm(ModalScreen[bool]):
    """"Halt rollout #3 (picow 1.1.0)? No new offers to 12 devices." y/enter confirms, n/esc cancels."""

    BINDINGS = [*keymap.MODAL, Binding("y", "yes", "Yes", id="modal.yes", tooltip="do it"),
                Binding("n", "cancel", "No", id="modal.no", tooltip="do nothing")]

    def __init__(self, title: str, body: str, verb: str = "Confirm") -> None:
        super().__init__()
        self.title_text, self.body, self.verb = title, body, verb

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(visible(self.title_text), classes="dialog-title", markup=False)
            yield Static(visible(self.body, lines=True), classes="dialog-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.verb} (y)", variant="error", id="yes")
                yield Button("Cancel (esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class TypedAhead(ModalScreen[T]):
    """A modal with fields, which takes the text typed in the burst that opened it: a key that reached the
    modal itself while a field takes text was sent before that field had focus (an input takes every
    printable key), so it goes there; before a list or a button, it goes on to the modal's bindings, which
    take no letters (not to a later field, not to the screen beneath)."""

    def on_key(self, event: events.Key) -> None:
        field = self.focused or next(iter(self.focus_chain), None)
        if isinstance(field, Input) and event.is_printable and event.character is not None:
            event.stop()
            event.prevent_default()
            field.insert_text_at_cursor(event.character)


class Prompt(TypedAhead[str | None]):
    """One line of input (a file, a folder, a URL); enter submits, esc cancels."""

    BINDINGS = [*keymap.MODAL]

    def __init__(self, title: str, placeholder: str = "", value: str = "", suggester: Suggester | None = None) -> None:
        super().__init__()
        self.title_text, self.placeholder, self.value, self.suggester = title, placeholder, value, suggester

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(visible(self.title_text), classes="dialog-title", markup=False)
            yield Input(self.value, placeholder=self.placeholder, id="prompt", suggester=self.suggester)
            yield Label("enter to go, esc to cancel" + (", → completes the path" if self.suggester else ""),
                        classes="dim", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Help(ModalScreen[None]):
    """Every binding of the screen underneath and of the app, with what it does."""

    BINDINGS = [*keymap.MODAL, Binding("question_mark", "cancel", "Close", show=False, id="help.close")]

    def __init__(self, sections: list[tuple[str, list[Binding]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Label("Keys", classes="dialog-title")
            for title, bindings in self.sections:
                yield Label(title, classes="help-section", markup=False)
                seen: set[str] = set()
                for b in bindings:
                    if b.id in seen:
                        continue
                    seen.add(b.id or b.key)
                    key = b.key_display or _key_label(b.key)
                    yield Static(f"  {key:<10} {b.tooltip or b.description}", classes="help-line", markup=False)
            yield Label("ctrl+p or : opens the command palette: every action by name", classes="dim")

    def action_cancel(self) -> None:
        self.dismiss(None)


class EventDetail(ModalScreen[None]):
    """One event of the log in full: who, when, what, and its whole detail (JSON laid out)."""

    BINDINGS = [*keymap.MODAL, Binding("enter", "cancel", "Close", show=False, id="event.close")]

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        e = self.event
        facts = [("time", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(e.at))), ("actor", e.actor),
                 ("device", e.device_id or "-"), ("version", e.version or "-"), ("result", e.result or "-")]
        with VerticalScroll(classes="dialog event"):
            yield Label(f"Event #{e.id}: {e.kind}", classes="dialog-title", markup=False)
            yield Static("\n".join(f"{k:<8} {v}" for k, v in facts), classes="dialog-body", markup=False)
            yield Static(_laid_out(e.detail) or "(no detail)", id="event-detail", markup=False)
            yield Label("esc or enter closes", classes="dim")

    def action_cancel(self) -> None:
        self.dismiss(None)


def _laid_out(detail: str) -> str:
    try:
        value = json.loads(detail)
    except ValueError:
        return detail
    return json.dumps(value, indent=2, ensure_ascii=False) if isinstance(value, (dict, list)) else detail


_KEY_NAMES = {"question_mark": "?", "slash": "/", "colon": ":", "left_square_bracket": "[",
              "right_square_bracket": "]", "escape": "esc", "space": "space"}


def _key_label(key: str) -> str:
    return ",".join(_KEY_NAMES.get(k, k) for k in key.split(","))


class FormScreen(TypedAhead[T]):
    """A modal of several inputs in which every keystroke counts in the order typed, however fast they come
    (a paste, a laggy SSH link): tab and enter move between fields in the app's own key order, not after
    the keys already typed have gone to the next field, and a submit reads the fields only once every
    input has taken the keys sent to it before."""

    BINDINGS = [*keymap.MODAL,
                Binding("tab", "next_field", "Next field", show=False, priority=True, id="form.next"),
                Binding("shift+tab", "previous_field", "Previous field", show=False, priority=True, id="form.previous"),
                Binding("enter", "enter", "Next / go", show=False, priority=True, id="form.enter",
                        tooltip="the next field; on the last, submit (a list opens with space)"),
                Binding("ctrl+s", "submit", "Go", id="form.submit", tooltip="submit the form")]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "enter" and not isinstance(self.focused, (Input, Select)):
            return False  # a button, or a list opened (its overlay has the focus), takes its own enter
        return True

    def action_next_field(self) -> None:
        self.focus_next()

    def action_previous_field(self) -> None:
        self.focus_previous()

    def action_enter(self) -> None:
        inputs = list(self.query(Input))
        if self.focused is inputs[-1] or not self.ENTER_MOVES:
            self.action_submit()
        else:
            self.focus_next()

    ENTER_MOVES = True  # enter on a field but the last goes to the next one

    def action_submit(self) -> None:
        self.after_typing(self.submit)

    def after_typing(self, callback: Callable[[], None]) -> None:
        """Call `callback` once each input has handled the keys already sent to it."""
        inputs = list(self.query(Input))

        def step(i: int) -> None:
            if i == len(inputs):
                callback()
            else:
                inputs[i].call_later(step, i + 1)

        step(0)

    def submit(self) -> None:
        """Check the fields and dismiss with them, or say what is wrong."""

    def action_cancel(self) -> None:
        self.dismiss(None)


class Fields(FormScreen[dict[str, str] | None]):
    """A few labelled lines of input; enter on the last (or ctrl+s) submits them all, esc cancels.
    `check` names what is wrong with the values (shown in the form), or None."""

    def __init__(self, title: str, fields: list[tuple[str, str, str, bool]],
                 check: Callable[[dict[str, str]], str | None] = lambda _: None) -> None:
        """`fields`: (key, label, placeholder, secret)."""
        super().__init__()
        self.title_text, self.fields, self.check = title, fields, check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label(visible(self.title_text), classes="dialog-title", markup=False)
            for key, label, placeholder, secret in self.fields:
                with Horizontal(classes="row"):
                    yield Label(label, classes="field", markup=False)
                    yield Input(placeholder=placeholder, password=secret, id=f"field-{key}")
            yield Label("", id="form-error", classes="error")
            yield Label("enter on the last field or ctrl+s to go, esc to cancel", classes="dim")

    def values(self) -> dict[str, str]:
        """Each field's text, stripped but for secrets (a password may hold spaces)."""
        typed = {key: self.query_one(f"#field-{key}", Input).value for key, *_ in self.fields}
        return {key: typed[key] if secret else typed[key].strip() for key, _, _, secret in self.fields}

    def submit(self) -> None:
        values = self.values()
        wrong = self.check(values)
        if wrong:
            self.query_one("#form-error", Label).update(visible(f"✖ {wrong}"))
        else:
            self.dismiss(values)
