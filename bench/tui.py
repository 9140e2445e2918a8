"""The TUI under a busy fleet: 2,000 devices, 200 signed heartbeats per second through the real hub,
arriving over its SSE stream, against a naive TUI that rebuilds the fleet table on every event.

- hub: the real `picoctl serve` on 127.0.0.1, devices registered straight into its store.
- load: a separate process sending paced, HMAC-signed heartbeats (200/s over 8 connections).
- picoctl: the real app (AsyncHubClient, SSE worker, model, coalesced incremental flushes), headless at
  120x40 on the fleet screen; a probe task measures the event loop's lag every 10 ms.
- datatable: the same app and batching, the fleet table a Textual DataTable updated in place (the
  KeyedTable every other screen uses) instead of FastTable: what FastTable's own drawing buys.
- baseline: the same app, except that each event clears the fleet table and adds every row again.
Key presses: every 0.2 s a j or k is sent to the app as a terminal's would be, timed until the fleet
table's cursor has moved. Staleness is the age (since the hub took it) of the oldest heartbeat in each flush to the screen.
First frame: `python -m picoctl` started in a pseudo-terminal (80x24) with the hub up, until the first
device id is drawn.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import hmac
import json
import multiprocessing
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events

from picoctl import config
from picoctl.client import AsyncHubClient
from picoctl.site import init_site
from picoctl.hub.state import DB_NAME
from picoctl.sim.fleet import register_many
from picoctl.sim.local_hub import free_port
from picoctl.tui.app import PicoctlApp
from picoctl.tui.screens.fleet import COLUMNS, FleetScreen
from picoctl.tui.widgets.table import KeyedTable
from picoctl.tui.source import Live

N_DEVICES = 2000
RATE = 200  # heartbeats per second
CONNECTIONS = 8
MEASURE_S = 10.0
BASELINE_S = 4.0
PROBE_S = 0.010
KEY_EVERY = 20  # probes between two key presses (j or k on the fleet table)


# --- the load: paced signed heartbeats ----------------------------------------------------------

async def _sender(port: int, devices: list[tuple[str, bytes]], rate: float, stop: float, sent: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    for i in range(10**9):
        due = t0 + i / rate
        now = time.monotonic()
        if due >= stop:
            break
        if due > now:
            await asyncio.sleep(due - now)
        device_id, key = devices[i % len(devices)]
        body = json.dumps({"id": device_id, "counter": int(time.time() * 1e6), "version": "1.0.0", "seq": 0,
                           "uptime_s": i, "mem_free": 100000 + i % 5000, "rssi": -40 - i % 50,
                           "readings": {"moisture": round(30 + (i % 400) / 10, 1), "pump": i % 7 == 0}},
                          separators=(",", ":")).encode()
        mac = hmac.new(key, body, hashlib.sha256).hexdigest()
        writer.write(b"POST /heartbeat HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
                     b"X-Picoctl-Device: %s\r\nX-Picoctl-Mac: %s\r\nContent-Length: %d\r\n\r\n%s"
                     % (device_id.encode(), mac.encode(), len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0)
        await reader.readexactly(length)
        sent[0] += head.startswith(b"HTTP/1.1 200")
    writer.close()


def _load(port: int, devices: list[tuple[str, str]], seconds: float, out: "multiprocessing.Queue[int]") -> None:
    keyed = [(d, bytes.fromhex(k)) for d, k in devices]
    per = [keyed[i::CONNECTIONS] for i in range(CONNECTIONS)]
    sent = [0]
    stop = time.monotonic() + seconds

    async def main() -> None:
        await asyncio.gather(*(_sender(port, p, RATE / CONNECTIONS, stop, sent) for p in per))

    asyncio.run(main())
    out.put(sent[0])


# --- the TUI under load ------------------------------------------------------------------------

class RebuildApp(PicoctlApp):
    """The naive design: every event rebuilds the fleet table from scratch."""

    measuring = True

    def take(self, kind: str, data: object) -> None:
        super().take(kind, data)
        screen = self.screen
        if self.measuring and hasattr(screen, "table"):
            table = screen.table
            table.keep_only(())  # forget every row, then add them all again
            now = self.clock()
            for d in sorted(self.model.devices.values(), key=lambda d: d.id):
                table.put(d.id, screen.cells(d, now))


class FleetDataTable(KeyedTable):
    """KeyedTable with the two calls the fleet screen makes of FastTable."""

    def keys_in_view(self) -> list[str]:
        top = int(self.scroll_y)
        return [r.key.value for r in self.ordered_rows[top:top + self.size.height]]

    def sort_by(self, column: str, reverse: bool = False, key: object = None) -> None:
        super().sort_by(column, reverse)


class DataTableFleetScreen(FleetScreen):
    def compose(self):  # type: ignore[no-untyped-def]
        for widget in super().compose():
            yield FleetDataTable(COLUMNS, id="devices") if widget.id == "devices" else widget

    @property
    def table(self) -> FleetDataTable:  # type: ignore[override]
        return self.query_one("#devices", FleetDataTable)


class DataTableApp(PicoctlApp):
    """The same app and batching, the fleet table a DataTable."""

    MODES = {**PicoctlApp.MODES, "fleet": DataTableFleetScreen}


async def measure(app_cls: type[PicoctlApp], cfg: config.FleetConfig, url: str, token: str, port: int,
                  devices: list[tuple[str, str]], seconds: float) -> dict[str, float]:
    app = app_cls(cfg, Live(cfg, client=AsyncHubClient(url, token)))
    lags: list[float] = []
    keys: list[float] = []  # from a key press sent to the cursor having moved
    async with app.run_test(size=(120, 40)) as pilot:
        await asyncio.wait_for(app.loaded.wait(), 30)
        while app.link.state != "live":
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        queue: multiprocessing.Queue[int] = multiprocessing.get_context("fork").Queue()
        load = multiprocessing.get_context("fork").Process(target=_load, args=(port, devices, seconds, queue))
        load.start()
        applied0 = app.model.applied
        app.stats["max_staleness_s"] = 0.0
        end = time.monotonic() + seconds
        table: Any = app.screen.query_one("#devices")  # FastTable, or the DataTable of that arm
        pending: tuple[float, int] | None = None  # (sent at, the row the cursor must reach)
        i = 0
        while time.monotonic() < end:
            t = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            lags.append(time.perf_counter() - t - PROBE_S)
            i += 1
            if pending is not None and table.cursor_row == pending[1]:
                keys.append(time.perf_counter() - pending[0])
                pending = None
            elif pending is None and i % KEY_EVERY == 0:  # j, then k: the cursor moves down and back
                step = 1 if table.cursor_row == 0 else -1
                event = events.Key("j" if step == 1 else "k", "j" if step == 1 else "k")
                event.set_sender(app)
                pending = (time.perf_counter(), table.cursor_row + step)
                assert app._driver is not None
                app._driver.send_message(event)  # as a terminal's key press arrives
        missed = 1 if pending is not None else 0
        app.measuring = False  # type: ignore[attr-defined]  # the baseline's backlog is not worked off
        sent = queue.get(timeout=30)
        load.join(10)
        await pilot.pause(1.0)  # the last events arrive and flush
        rss = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                       if line.startswith("VmRSS"))) / 1024
        shown = app.model.applied - applied0
    await app.source.client.aclose()
    lags.sort()
    return {"lag_p99_ms": lags[int(len(lags) * 0.99)] * 1000, "lag_p50_ms": statistics.median(lags) * 1000,
            "lag_max_ms": lags[-1] * 1000, "max_staleness_s": app.stats["max_staleness_s"], "rss_mb": rss,
            "sent": sent, "applied": shown, "rate": sent / seconds,
            "key_p50_ms": (statistics.median(keys) * 1000 if keys else float("inf")),
            "key_p99_ms": (sorted(keys)[int(len(keys) * 0.99)] * 1000 if keys else float("inf")),
            "key_max_ms": (max(keys) * 1000 if keys else float("inf")), "keys": len(keys), "keys_missed": missed}


# --- time to the first frame ----------------------------------------------------------------------

def first_frame(cfg_path: Path, url: str) -> float:
    """Seconds from starting `python -m picoctl` in an 80x24 pty until the first device id is drawn."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = os.environ | {"TERM": "xterm-256color", "PICOCTL_HUB_URL": url, "COLUMNS": "80", "LINES": "24"}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(cfg_path)], stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        while time.monotonic() - t0 < 20:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
                if b"sim-0000" in seen:
                    return time.monotonic() - t0
        raise RuntimeError(f"no frame with devices in 20 s; got {seen[-400:]!r}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        os.close(master)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg_path = init_site(Path(tmp) / "site", port)
        cfg = config.load(cfg_path)
        devices = register_many(cfg.data_dir / DB_NAME, N_DEVICES)
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "hub.log", "wb")
        hub = subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(cfg_path), "serve", "--host",
                                "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            import httpx

            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or hub.poll() is not None:
                    raise RuntimeError("hub did not start:\n" + (Path(tmp) / "hub.log").read_text()[-2000:])
                time.sleep(0.05)
            frames = sorted(first_frame(cfg_path, url) for _ in range(3))
            token = cfg.read_token()
            ours = asyncio.run(measure(PicoctlApp, cfg, url, token, port, devices, MEASURE_S))
            datatable = asyncio.run(measure(DataTableApp, cfg, url, token, port, devices, MEASURE_S))
            base = asyncio.run(measure(RebuildApp, cfg, url, token, port, devices, BASELINE_S))
        finally:
            hub.send_signal(signal.SIGTERM)
            hub.wait(10)
            log.close()
    for name, r in (("picoctl (FastTable)", ours), ("same batching, DataTable", datatable),
                    ("baseline (rebuild per event)", base)):
        print(f"{name:30} {r['rate']:.0f} hb/s sent, {r['applied']} events applied; loop lag p50 "
              f"{r['lag_p50_ms']:.1f} ms p99 {r['lag_p99_ms']:.1f} ms max {r['lag_max_ms']:.1f} ms; "
              f"oldest event when shown {r['max_staleness_s']:.2f} s; RSS {r['rss_mb']:.0f} MB; "
              f"{r['keys']} key presses answered in p50 {r['key_p50_ms']:.0f} ms p99 {r['key_p99_ms']:.0f} ms max {r['key_max_ms']:.0f} ms"
              f"{', the last one never' if r['keys_missed'] else ''}")
    print(f"first frame (median of 3, pty 80x24, {N_DEVICES} devices): {frames[1]:.2f} s")
    print(f"RESULT lag_p99_ms={ours['lag_p99_ms']:.1f} key_p50_ms={ours['key_p50_ms']:.0f} key_p99_ms={ours['key_p99_ms']:.0f} "
          f"max_staleness_s={ours['max_staleness_s']:.2f} "
          f"rss_mb={ours['rss_mb']:.0f} first_frame_s={frames[1]:.2f} "
          f"datatable_lag_p99_ms={datatable['lag_p99_ms']:.1f} datatable_max_staleness_s="
          f"{datatable['max_staleness_s']:.2f} datatable_rss_mb={datatable['rss_mb']:.0f} "
          f"datatable_key_p99_ms={datatable['key_p99_ms']:.0f} baseline_key_p99_ms={base['key_p99_ms']:.0f} "
          f"baseline_lag_p99_ms={base['lag_p99_ms']:.1f} baseline_max_staleness_s={base['max_staleness_s']:.2f} "
          f"lag_ratio={base['lag_p99_ms'] / max(ours['lag_p99_ms'], 0.1):.1f}")


if __name__ == "__main__":
    main()
