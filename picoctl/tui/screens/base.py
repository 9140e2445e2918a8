"""What every screen shares: the title bar, the hub banner, the model, the update hooks the app calls, and
the one route by which a failed worker is shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from ..model import Event, FleetModel
from ..source import Source
from ..text import visible
from ..widgets.bars import LinkBanner, TitleBar

if TYPE_CHECKING:
    from textual import getters

    from ..app import PicoctlApp


def one_line(exc: BaseException | None) -> str:
    """The first line of an error, made visible: errors carry what the hub or a board said."""
    text = str(exc).strip().splitlines() if exc is not None else []
    return visible(text[0]) if text else exc.__class__.__name__


class ModelScreen(Screen[None]):
    """A screen rendering the app's FleetModel; `apply_changes` gets each flush, `tick` each second.

    Workers raise what refuses them: a worker that fails ends in `worker_ended` (for the screen to put
    itself right) and its error is shown as a toast, `<worker name>: <error>`.
    """

    MODE = "fleet"

    if TYPE_CHECKING:
        app = getters.app(PicoctlApp)

    @property
    def model(self) -> FleetModel:
        return self.app.model

    @property
    def source(self) -> Source:
        return self.app.source

    def top(self) -> ComposeResult:
        yield TitleBar(self.MODE, id="titlebar")
        yield LinkBanner(id="banner", markup=False)

    def on_screen_resume(self) -> None:
        self.sync()

    def sync(self) -> None:
        """Bring every widget up to date with the model (on first show and when shown again)."""

    def apply_changes(self, changed: set[str], removed: set[str], events: list[Event], topics: set[str]) -> None:
        """Update what the changes touch; called only while the screen is in the current stack."""

    @property
    def ready(self) -> bool:
        """Composed and not being torn down: the app may hand it changes."""
        return self.is_mounted and not self._closing and bool(self.query("#titlebar"))

    def tick(self) -> None:
        self.query_one(TitleBar).refresh()

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            return
        error = worker.error if event.state is WorkerState.ERROR else None
        shown = self.worker_ended(worker, error)
        if error is not None and not shown:
            self.fail(f"{worker.name}: {one_line(error)}")

    def worker_ended(self, worker: Worker[object], error: BaseException | None) -> bool:
        """A worker of this screen finished (`error` None), failed or was cancelled; True when the screen
        has shown the error itself."""
        return False

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_changed(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.focus_next()

    def key_escape(self) -> None:
        """esc clears the filter, from the box or from the table it filters."""
        box = self.query("#filter").only_one(Input) if self.query("#filter") else None
        if box is not None and (box.has_focus or box.value):
            box.value = ""
            box.display = False
            if box.has_focus:
                self.focus_next()

    def filter_changed(self, text: str) -> None:
        """The filter box's text changed."""

    def check_now(self, device_id: str, group: str) -> None:
        """Have the hub tell `device_id` to check for an update at its next heartbeat (a worker of `group`)."""
        self.run_worker(self._check_now(device_id), name=f"check now {device_id}", group=group, exclusive=True,
                        exit_on_error=False)

    async def _check_now(self, device_id: str) -> None:
        await self.source.check_now(device_id)
        self.notify(f"{device_id} will check for an update at its next heartbeat")

    def fail(self, message: str) -> None:
        self.app.fail(message)
