"""Authenticated heartbeat ingest: the hub's group commit against a naive one-commit-per-heartbeat server.

1,000 simulated devices (picoctl.sim.fleet) send signed heartbeats over loopback through persistent
HTTP/1.1 connections (raw asyncio clients in two processes, so the load is not the bottleneck). Each server
is pinned to one core, the load to the other.
- hub:      the real `picoctl serve` (uvicorn, Starlette; a single writer commits batches durably).
- baseline: the naive design, a Flask-style synchronous threaded server whose handler checks the
            same HMAC and counter in SQLite, then inserts and commits each heartbeat alone.
Both use the same schema (picoctl.hub.store) with synchronous=FULL and WAL; after each run the count
of stored heartbeats must equal the count acknowledged.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import multiprocessing
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picoctl import signing  # noqa: E402
from picoctl.commands.init import init_site  # noqa: E402
from picoctl.sim.fleet import SimDevice  # noqa: E402
from picoctl.sim.fleet import register_many  # noqa: E402
from picoctl.sim.local_hub import free_port  # noqa: E402

N_DEVICES = 1000
CONNECTIONS = 32  # closed loop: each connection has one heartbeat in flight
LOAD_PROCESSES = 2
WARMUP_S = 1.0
MEASURE_S = 6.0
SERVER_CPU, LOAD_CPUS = {0}, {1}


# --- the load ----------------------------------------------------------------------------------

async def _connection(port: int, devices: list[SimDevice], start: float, stop: float, out: list[float],
                      errors: list[int], acked: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    while time.perf_counter() < stop:
        device = devices[i % len(devices)]
        i += 1
        _, body, headers = device.heartbeat_request()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"POST /heartbeat HTTP/1.1\r\nHost: hub\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        t0 = time.perf_counter()
        answer = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in answer.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        t1 = time.perf_counter()
        ok = answer.startswith(b"HTTP/1.1 200")
        acked[0] += ok
        if t0 >= start:
            if ok:
                out.append(t1 - t0)
            else:
                errors.append(1)
    writer.close()


def _load_process(args: tuple[int, list[tuple[str, str]], int, float, float]) -> tuple[list[float], int, int]:
    port, devices, connections, start, stop = args
    os.sched_setaffinity(0, LOAD_CPUS)
    sims = [SimDevice(d, k) for d, k in devices]
    latencies: list[float] = []
    errors: list[int] = []
    acked = [0]
    per = [sims[i::connections] for i in range(connections)]

    async def main() -> None:
        await asyncio.gather(*(_connection(port, p, start, stop, latencies, errors, acked) for p in per))

    asyncio.run(main())
    return latencies, len(errors), acked[0]


def run_load(port: int, devices: list[tuple[str, str]]) -> tuple[list[float], int, int]:
    """Latencies of heartbeats acknowledged in the window, failures in it, all acknowledged."""
    start = time.perf_counter() + WARMUP_S + 0.3
    stop = start + MEASURE_S
    jobs = [(port, devices[i::LOAD_PROCESSES], CONNECTIONS // LOAD_PROCESSES, start, stop) for i in range(LOAD_PROCESSES)]
    with multiprocessing.get_context("fork").Pool(LOAD_PROCESSES) as pool:
        results = pool.map(_load_process, jobs)
    return [x for lat, _, _ in results for x in lat], sum(r[1] for r in results), sum(r[2] for r in results)


# --- the naive baseline ------------------------------------------------------------------------

class NaiveHandler(BaseHTTPRequestHandler):
    """One thread per connection; every heartbeat authenticated, inserted and committed on its own."""

    protocol_version = "HTTP/1.1"
    db_path = ""
    local = threading.local()

    def log_message(self, *args: object) -> None:
        pass

    def _conn(self) -> sqlite3.Connection:
        if not hasattr(self.local, "conn"):
            c = sqlite3.connect(self.db_path, isolation_level=None, timeout=30)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=FULL")
            self.local.conn = c
        return self.local.conn

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        device_id = self.headers["X-Picoctl-Device"]
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        row = c.execute("SELECT key, last_counter FROM devices WHERE id = ?", (device_id,)).fetchone()
        data = json.loads(raw)
        if row is None or not hmac.compare_digest(signing.device_mac(row[0], raw), self.headers["X-Picoctl-Mac"]) \
                or data["counter"] <= row[1]:
            c.execute("ROLLBACK")
            return self._answer(403, b'{"error":"refused"}')
        c.execute("INSERT INTO heartbeats (device_id, at, version, uptime_s, mem_free, rssi, readings)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?)", (device_id, time.time(), data["version"], data["uptime_s"],
                                                    data["mem_free"], data["rssi"], json.dumps(data["readings"])))
        c.execute("UPDATE devices SET last_seen = ?, last_counter = ? WHERE id = ?", (time.time(), data["counter"], device_id))
        c.execute("COMMIT")
        reply = json.dumps({"ok": True, "counter": data["counter"], "check_now": False}).encode()
        self.send_response(200)
        self.send_header("X-Picoctl-Mac", signing.device_mac(row[0], reply))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def _serve_baseline(db: str, port: int) -> None:
    os.sched_setaffinity(0, SERVER_CPU)
    NaiveHandler.db_path = db
    ThreadingHTTPServer(("127.0.0.1", port), NaiveHandler).serve_forever()


# --- runs --------------------------------------------------------------------------------------

def wait_listening(port: int, proc: "subprocess.Popen | multiprocessing.Process") -> None:
    import socket

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def stored(db: Path) -> int:
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0]


def report(name: str, latencies: list[float], errors: int) -> tuple[float, float, float]:
    rate = len(latencies) / MEASURE_S
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[int(len(ms) * 0.99)]
    print(f"{name:<9} {rate:8.0f} acknowledged heartbeats/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
          f"refused/failed {errors}")
    return rate, p50, p99


def run_hub(work: Path) -> tuple[list[float], int, int, Path]:
    port = free_port()
    cfg_path = init_site(work / "hub", port)
    db = work / "hub" / "data" / "fleet.db"
    devices = register_many(db, N_DEVICES)
    proc = subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(cfg_path), "serve", "--host", "127.0.0.1",
                             "--port", str(port)], preexec_fn=lambda: os.sched_setaffinity(0, SERVER_CPU))
    try:
        wait_listening(port, proc)
        latencies, errors, acked = run_load(port, devices)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    return latencies, errors, acked, db


def run_baseline(work: Path) -> tuple[list[float], int, int, Path]:
    port = free_port()
    db = work / "baseline.db"
    devices = register_many(db, N_DEVICES)
    proc = multiprocessing.get_context("fork").Process(target=_serve_baseline, args=(str(db), port), daemon=True)
    proc.start()
    try:
        wait_listening(port, proc)
        latencies, errors, acked = run_load(port, devices)
    finally:
        proc.terminate()
        proc.join(10)
    return latencies, errors, acked, db


def main() -> None:
    if len(os.sched_getaffinity(0)) < 2:
        global SERVER_CPU, LOAD_CPUS
        SERVER_CPU = LOAD_CPUS = set(os.sched_getaffinity(0))
    print(f"{N_DEVICES} devices, {CONNECTIONS} keep-alive connections from {LOAD_PROCESSES} processes, "
          f"{MEASURE_S:g} s measured after {WARMUP_S:g} s warm-up; server on CPU {sorted(SERVER_CPU)}")
    with tempfile.TemporaryDirectory(prefix="picoctl-bench-") as tmp:
        work = Path(tmp)
        hub_lat, hub_err, hub_acked, hub_db = run_hub(work)
        hub_rate, hub_p50, hub_p99 = report("hub", hub_lat, hub_err)
        base_lat, base_err, base_acked, base_db = run_baseline(work)
        base_rate, base_p50, base_p99 = report("baseline", base_lat, base_err)
        for name, db, acked in (("hub", hub_db, hub_acked), ("baseline", base_db, base_acked)):
            n = stored(db)
            print(f"{name:<9} stored {n} of {acked} acknowledged heartbeats{'' if n >= acked else '  LOST SOME'}")
            if n < acked:
                raise SystemExit(f"{name}: acknowledged heartbeats are missing from the store")
    ratio = hub_rate / base_rate if base_rate else float("inf")
    print(f"RESULT hb_per_s={hub_rate:.0f} p99_ms={hub_p99:.1f} p50_ms={hub_p50:.1f} "
          f"baseline_hb_per_s={base_rate:.0f} baseline_p99_ms={base_p99:.1f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
