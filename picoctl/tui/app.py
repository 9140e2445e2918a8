"""The picoctl TUI: one App, a screen per mode, the hub's event stream followed in a worker.

Events are applied to the `FleetModel` as they arrive (cheap: a dict update each) and flushed to the
visible screen every FLUSH_S, so a burst of heartbeats costs one incremental table update per
interval instead of one per event. Ages and liveness tick once a second from the injected clock.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import termios
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from ..config import FleetConfig
from ..errors import OutOfBounds, UnexpectedAnswer, Unreachable
from . import keymap
from .model import FleetModel, Link, thresholds_from
from .screens.base import ModelScreen, one_line
from .screens.device import DeviceScreen
from .screens.device_log import DeviceLogScreen
from .screens.fleet import FleetScreen
from .screens.history import HistoryScreen
from .screens.pi import PiScreen
from .screens.releases import ReleasesScreen
from .screens.usb import UsbScreen
from .source import Source
from .text import visible
from .widgets.modals import Help

FLUSH_S = 0.25
TICK_S = 1.0
RETRY_MAX_S = 5.0
TERMINAL_CHECK_S = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
YIELD_EVERY = 50  # stream events applied between two yields to the event loop
MODES = ("fleet", "releases", "history", "pi", "usb")


class PicoctlApp(App[None]):
    CSS_PATH = str(Path(__file__).with_name("picoctl.tcss"))  # absolute: subclasses elsewhere keep it
    TITLE = "picoctl"
    BINDINGS = [*keymap.APP]
    MODES = {"fleet": FleetScreen, "releases": ReleasesScreen, "history": HistoryScreen, "pi": PiScreen,
             "usb": UsbScreen}

    link: reactive[Link] = reactive(Link())

    def __init__(self, cfg: FleetConfig, source: Source, clock: Callable[[], float] = time.time,
                 start_mode: str = "fleet", live_ticks: bool = True, saves: Path | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.saves = saves or Path.cwd()  # where what the operator saves (a serial log) goes unless told
        self.source = source
        self.clock = clock
        self.hub_url = source.url
        self.model = FleetModel(thresholds_from(cfg), clock)
        self.start_mode = start_mode
        self.live_ticks = live_ticks
        self.last_event_id: int | None = None
        self.loaded = asyncio.Event()
        self._signal_handlers: dict[int, Any] = {}
        self.stats = {"max_staleness_s": 0.0}  # the longest a heartbeat waited to be shown, for the benchmark

    # --- lifecycle --------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        self.follow_hub()
        self.set_interval(FLUSH_S, self.flush)
        if self.live_ticks:
            self.set_interval(TICK_S, self.tick)
        if not self.is_headless:
            self._end_with_the_terminal()

    def _end_with_the_terminal(self) -> None:
        """Quit on SIGTERM, SIGHUP or SIGINT, and when the terminal is gone: a tmux window killed under
        `make demo` hangs up the terminal but signals only the session leader (make), so the TUI would
        otherwise stay, spinning on a dead terminal, and keep whatever started it from cleaning up."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._signal_handlers[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self._stop_signal)
        self.set_interval(TERMINAL_CHECK_S, self._check_terminal)

    def _stop_signal(self) -> None:
        self._restore_signals()  # a second signal goes to whatever ran the TUI (the demo: its cleanup)
        self.exit()

    def _restore_signals(self) -> None:
        """Hand the stop signals back as they were before (closing the loop would set them to the default,
        which kills: a second signal would cut short the cleanup of whatever started the TUI)."""
        loop = asyncio.get_running_loop()
        for sig, handler in self._signal_handlers.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, handler)
        self._signal_handlers.clear()

    def on_unmount(self) -> None:
        if self._signal_handlers:
            self._restore_signals()

    def _check_terminal(self) -> None:
        try:
            termios.tcgetattr(sys.__stdin__.fileno() if sys.__stdin__ else -1)
        except (termios.error, OSError, ValueError, AttributeError):
            self.exit(return_code=1)

    @work(exclusive=True, exit_on_error=False, group="hub")
    async def follow_hub(self) -> None:
        """Load the lists, then follow the event stream; on any failure say so and retry, forever."""
        delay = 0.5
        need_lists = True
        while True:
            try:
                if need_lists:
                    await self.reload()
                    need_lists = False
                self.link = Link("live")
                delay = 0.5
                n = 0
                async for eid, kind, data in self.source.stream(self.last_event_id):
                    if kind == "resync":
                        await self.reload()
                        continue
                    self.take(kind, data)
                    if eid is not None:
                        self.last_event_id = eid
                    n += 1
                    if n % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                raise ConnectionError("event stream closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the link: banner, wait, retry
                why = visible(exc.cause.partition("\n")[0]) if isinstance(exc, Unreachable) else one_line(exc)
                self.link = Link("down", why, self.link.since or self.clock(),
                                 answered=isinstance(exc, UnexpectedAnswer), slow=isinstance(exc, OutOfBounds))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def watch_link(self, link: Link) -> None:
        self.model.link = link  # liveness holds still while the hub cannot be reached
        self.model.dirty.add("devices")  # every row says whether it is last-known

    def take(self, kind: str, data: object) -> None:
        """One event of the stream into the model; the screens see it at the next flush."""
        self.model.apply(kind, data)

    async def reload(self) -> None:
        """Every list from the hub, then the visible screen updated from them."""
        devices, releases, rollouts, history = await asyncio.gather(
            self.source.devices(), self.source.releases(), self.source.rollouts(), self.source.history())
        self.model.load_devices(devices)
        self.model.load_releases(releases)
        self.model.load_rollouts(rollouts)
        self.model.load_events(history)
        self.flush()
        self.loaded.set()

    async def refresh_rollouts(self) -> None:
        self.model.load_rollouts(await self.source.rollouts())
        self.model.counts_stale = False
        self.flush()

    @work(exclusive=True, exit_on_error=False, group="counts", name="rollout counts")
    async def reload_counts(self) -> None:
        """Rollout counts after deploy status changed them; at most once a tick, a failure left to the next."""
        await self.refresh_rollouts()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The app's own workers; the screens route theirs (ModelScreen). Link trouble is the banner's."""
        if event.state is WorkerState.ERROR and event.worker.group != "counts":
            self.fail(f"{event.worker.name}: {one_line(event.worker.error)}")

    def flush(self) -> None:
        """Hand what changed since the last flush to the screens that show it."""
        oldest = self.model.oldest_unshown
        changes = self.model.take_changes()
        if oldest is not None:  # how long the oldest heartbeat of this flush waited since the hub took it
            self.stats["max_staleness_s"] = max(self.stats["max_staleness_s"], self.clock() - oldest)
        for screen in self._live_screens():
            screen.apply_changes(*changes)

    def tick(self) -> None:
        if self.model.counts_stale and not self.link.down:
            self.reload_counts()
        for screen in self._live_screens():
            screen.tick()

    def _live_screens(self) -> Iterable[ModelScreen]:
        """The screens of the current mode's stack that render model data."""
        for screen in self.screen_stack:
            if isinstance(screen, ModelScreen) and screen.ready:
                yield screen

    def _run_on(self, mode: str, action: str) -> None:
        self.switch_mode(mode)
        self.call_after_refresh(lambda: self.call_later(self.run_action, action, self.screen))

    def open_device(self, device_id: str) -> None:
        self.push_screen(DeviceScreen(device_id))

    def open_device_log(self, device_id: str) -> None:
        """The log viewer on a Pico W's output over the air (USB boards have theirs on the USB screen)."""
        d = self.model.devices.get(device_id)
        if d is None:
            return
        if d.type != "picow":
            self.notify(f"{device_id} is a {d.type}: its log is read over USB (5, then l)", severity="warning")
            return
        self.push_screen(DeviceLogScreen(device_id, d.type))

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """A toast, shown as plain text whatever `markup` says (widgets' notify passes True): a toast often
        quotes the hub or a board, and no toast of this app is written in markup."""
        super().notify(visible(message, lines=True), title=visible(title), severity=severity, timeout=timeout,
                       markup=False)

    def fail(self, message: str) -> None:
        """A failure, as a toast that stays longer than others: the one way a failure is shown."""
        self.notify(message, severity="error", timeout=8)

    # --- actions ---------------------------------------------------------------------------
    def action_show(self, mode: str) -> None:
        if mode != self.current_mode:
            self.switch_mode(mode)

    def action_cycle_screen(self, step: int) -> None:
        i = MODES.index(self.current_mode) if self.current_mode in MODES else 0
        self.switch_mode(MODES[(i + step) % len(MODES)])

    def action_help(self) -> None:
        screen = self.screen
        sections = [(f"This screen ({screen.__class__.__name__.removesuffix('Screen')})",
                     list(_bindings_of(screen)))]
        sections.append(("Tables", list(keymap.TABLE)))
        sections.append(("Everywhere", list(keymap.APP)))
        self.push_screen(Help(sections))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette offers every action bound on the current screen, on the other screens (it goes
        there first) and in the app."""
        for b in _bindings_of(screen):
            yield SystemCommand(b.description, b.tooltip or b.description,
                                lambda a=b.action, s=screen: self.call_later(self.run_action, a, s))
        for mode, title in keymap.SCREENS:
            if mode != self.current_mode:
                for b in keymap.BY_MODE[mode]:
                    yield SystemCommand(f"{b.description} ({title})", f"{title}: {b.tooltip or b.description}",
                                        lambda m=mode, a=b.action: self._run_on(m, a))
        for b in keymap.APP:
            if b.action != "command_palette":
                yield SystemCommand(b.description if not b.id or "screen" not in b.id else f"Show {b.description}",
                                    b.tooltip or b.description, lambda a=b.action: self.call_later(self.run_action, a))
        yield from super().get_system_commands(screen)


def _bindings_of(screen: Screen) -> Iterable[Binding]:
    for b in getattr(screen, "BINDINGS", []):
        if isinstance(b, Binding):
            yield b


def run_app(cfg: FleetConfig, saves: Path | None = None) -> int:
    """Run the TUI against the hub of `cfg`; 0 when quit."""
    from .source import Live

    PicoctlApp(cfg, Live(cfg), saves=saves).run()
    return 0
