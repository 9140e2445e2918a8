"""A Pico W's log over the air, as `picoctl devices log` reads it through the operator API.

The hub asks the board in its next heartbeat answer; the board posts its ring of recent output,
then new lines every couple of seconds while the request lasts. A board that does not answer within
`answer_timeout()` (its heartbeat interval and a margin) is reported as such rather than waited for.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .config import FleetConfig
from .errors import PicoctlError
from .protocol import LOG_WINDOW_S

POLL_S = 1.0
QUIET_POLLS = 3  # the board posts every 2 s while it streams
RENEW_BEFORE_S = 20.0  # a follower asks again this long before the board's window ends
MARGIN_S = 15.0


def age(seconds: float) -> str:
    """A time ago for people, as the CLI writes it: `4s`, then `3m` from two minutes, `2h` from two hours."""
    s = max(0, int(seconds))
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h"


@dataclass(frozen=True)
class LogLine:
    id: int
    at: float
    line: str

    def age(self, now: float) -> str:
        """How old the line is, for people (`age`)."""
        return age(now - self.at)


class NoAnswer(PicoctlError):
    """The board did not answer a log request in time."""


def answer_timeout(cfg: FleetConfig, device_type: str) -> float:
    """How long a board may take to answer: one heartbeat interval (it learns of the request in the
    next heartbeat answer), jitter, and a margin."""
    return cfg.device_type(device_type).heartbeat_interval_s * 1.2 + MARGIN_S


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "never heard from"
    return f"last heard {age(now - ts)} ago"


def read(client: Any, device_id: str, on_lines: Callable[[list[LogLine]], None], timeout_s: float,
         follow: bool = False, stop: Callable[[], bool] = lambda: False,
         sleep: Callable[[float], object] = time.sleep) -> None:
    """Ask for the board's log and hand its lines to `on_lines` as they come.

    Without `follow`, returns once the board has answered and sent its ring (a line written after the
    request arrived, or QUIET_POLLS polls in a row brought nothing new); with it, goes on (renewing the
    request) until `stop()`. Raises NoAnswer
    when the board sends nothing within `timeout_s` of the request.
    """
    start = client.device_logs(device_id)
    after = start["last_id"]
    asked = client.request_log(device_id, seconds=LOG_WINDOW_S)
    asked_at, until = time.time(), asked["log_until"]
    answered, ring_sent, quiet = False, False, 0
    while not stop():
        got = client.device_logs(device_id, after=after)
        lines = [LogLine(x["id"], x["at"], x["line"]) for x in got["lines"]]
        quiet = 0 if lines else quiet + 1
        if lines:
            after = lines[-1].id
            on_lines(lines)
        answered = answered or bool(lines) or (got.get("answered_at") or 0) >= asked_at
        ring_sent = ring_sent or any(x.at >= asked_at for x in lines)  # lines written since the request
        now = time.time()
        if not answered and now - asked_at > timeout_s:
            raise NoAnswer(f"{device_id} did not answer the log request within {timeout_s:.0f} s "
                           f"({_ago(got.get('last_seen'), now)}): it is offline or does not run picoctl's agent")
        if answered and not follow and (ring_sent or quiet >= QUIET_POLLS):
            return
        if follow and until - now < RENEW_BEFORE_S:
            asked = client.request_log(device_id, seconds=LOG_WINDOW_S)
            until = asked["log_until"]
        sleep(POLL_S)


class Follower:
    """Follows a board's log on a thread (for the TUI's log viewer): each line goes to `on_line` as
    `HH:MM:SS  5s ago  text`, the link's state to `on_status(connected, why)`."""

    def __init__(self, cfg: FleetConfig, device_id: str, device_type: str, on_line: Callable[[str], None],
                 on_status: Callable[[bool, str], None]) -> None:
        self.cfg, self.device_id, self.device_type = cfg, device_id, device_type
        self.on_line, self.on_status = on_line, on_status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"log {device_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _lines(self, lines: list[LogLine]) -> None:
        self.on_status(True, "")
        now = time.time()
        for x in lines:
            self.on_line(f"{time.strftime('%H:%M:%S', time.localtime(x.at))} {x.age(now):>4} ago  {x.line}")

    def _run(self) -> None:
        from .client import HubClient

        try:
            with HubClient.from_config(self.cfg) as client:
                read(client, self.device_id, self._lines, answer_timeout(self.cfg, self.device_type), follow=True,
                     stop=self._stop.is_set, sleep=self._stop.wait)
        except PicoctlError as exc:
            self.on_status(False, str(exc))
            self.on_line(f"[{exc}]")
