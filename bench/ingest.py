"""Authenticated heartbeat ingest: the hub on SQLite and on PostgreSQL, against a naive
one-commit-per-heartbeat server, and two hub replicas on one PostgreSQL database racing each other.

1,000 simulated devices (picoctl.sim.fleet) send signed heartbeats over loopback through persistent
HTTP/1.1 connections (raw asyncio clients in two processes, so the load is not the bottleneck). Each server
(the hubs and the PostgreSQL server alike) is pinned to one core, the load to the other.
- hub:      the real `picoctl serve` on SQLite (uvicorn, Starlette; a single writer commits batches durably).
- pg:       the same hub with hub.database_url on a temporary PostgreSQL cluster (fsync and
            synchronous_commit on; picoctl.sim.postgres).
- baseline: the naive design, a Flask-style synchronous threaded server whose handler checks the
            same HMAC and counter in SQLite, then inserts and commits each heartbeat alone.
- replicas: two hubs on one PostgreSQL database; every heartbeat is sent to both at once, so each
            counter races: exactly one may accept it (double_accepts counts both accepting).
SQLite runs use synchronous=FULL and WAL; after each run the count of stored heartbeats must equal
the count acknowledged (lost_acks counts the difference).

Those runs are closed-loop (32 heartbeats always in flight): they measure how many heartbeats a hub
takes in at most, and their latency is mostly the queue (32 / rate). What an operator needs is the
latency at a given fleet's load, so both hubs also take an open-loop run: heartbeats arriving at
random (Poisson) at the rate of FLEET_BOARDS boards at the agent's default heartbeat_s, whatever
the answers; each latency counts from the instant the heartbeat was due. `--boards N` sets another
fleet's size.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import multiprocessing
import os
import random
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

import psycopg

from picoctl import config, signing
from picoctl.commands.init import init_site
from picoctl.sim.fleet import SimDevice
from picoctl.sim.fleet import register_many
from picoctl.sim.local_hub import free_port
from picoctl.sim.postgres import TempPostgres, find_bindir

N_DEVICES = 1000
CONNECTIONS = 32  # closed loop: each connection has one heartbeat in flight
LOAD_PROCESSES = 2
WARMUP_S = 1.0
MEASURE_S = 4.0
FLEET_BOARDS = 15_000  # the open-loop runs: this fleet's heartbeats
HEARTBEAT_S = 60  # the agent's default heartbeat_s (device_code/picow/ota/agent.py)
SERVER_CPU, LOAD_CPUS = {0}, {1}


# --- the load ----------------------------------------------------------------------------------

async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    writer.write(request)
    answer = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in answer.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return answer.startswith(b"HTTP/1.1 200")


async def _connection(ports: list[int], devices: list[SimDevice], start: float, stop: float, out: list[float],
                      counts: list[int]) -> None:
    """One connection to each port; every heartbeat goes to all of them at once (a race when several).

    counts: [failed in the window, acknowledged, acknowledged twice]
    """
    links = [await asyncio.open_connection("127.0.0.1", port) for port in ports]
    i = 0
    while time.perf_counter() < stop:
        device = devices[i % len(devices)]
        i += 1
        _, body, headers = device.heartbeat_request()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST /heartbeat HTTP/1.1\r\nHost: hub\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        t0 = time.perf_counter()
        ok = sum(await asyncio.gather(*(_ask(r, w, request) for r, w in links)))
        t1 = time.perf_counter()
        counts[1] += ok
        counts[2] += ok > 1
        if t0 >= start:
            if ok:
                out.append(t1 - t0)
            else:
                counts[0] += 1
    for _, w in links:
        w.close()


async def _open_loop(port: int, devices: list[SimDevice], rate: float, start: float, stop: float, out: list[float],
                     counts: list[int], seed: int) -> None:
    """Heartbeats due at random instants (`rate` a second on average), each sent when due on an idle
    keep-alive connection (a new one when none is idle); its latency counts from when it was due."""
    rng = random.Random(seed)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    sent: list[asyncio.Task[None]] = []

    async def one(request: bytes, due: float) -> None:
        link = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        ok = await _ask(*link, request)
        done = time.perf_counter()
        idle.append(link)
        counts[1] += ok
        if due >= start:
            if ok:
                out.append(done - due)
            else:
                counts[0] += 1

    due, i = start - WARMUP_S, 0
    while due < stop:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        _, body, headers = devices[i % len(devices)].heartbeat_request()
        i += 1
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST /heartbeat HTTP/1.1\r\nHost: hub\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
        sent.append(asyncio.get_running_loop().create_task(one(request, due)))
        due += rng.expovariate(rate)
    await asyncio.gather(*sent)
    for _, w in idle:
        w.close()


def _load_process(args: tuple[list[int], list[tuple[str, str]], int, float, float, float | None, int]
                  ) -> tuple[list[float], list[int]]:
    ports, devices, connections, start, stop, rate, seed = args
    os.sched_setaffinity(0, LOAD_CPUS)
    sims = [SimDevice(d, k) for d, k in devices]
    latencies: list[float] = []
    counts = [0, 0, 0]
    per = [sims[i::connections] for i in range(connections)]

    async def main() -> None:
        if rate is not None:
            await _open_loop(ports[0], sims, rate, start, stop, latencies, counts, seed)
        else:
            await asyncio.gather(*(_connection(ports, p, start, stop, latencies, counts) for p in per))

    asyncio.run(main())
    return latencies, counts


def run_load(ports: list[int], devices: list[tuple[str, str]], rate: float | None = None
             ) -> tuple[list[float], int, int, int]:
    """Latencies of heartbeats acknowledged in the window, failures in it, all acknowledged, double accepts.

    Closed-loop (CONNECTIONS heartbeats in flight), or open-loop at `rate` heartbeats a second."""
    start = time.perf_counter() + WARMUP_S + 0.3
    stop = start + MEASURE_S
    jobs = [(ports, devices[i::LOAD_PROCESSES], CONNECTIONS // LOAD_PROCESSES, start, stop,
             None if rate is None else rate / LOAD_PROCESSES, i) for i in range(LOAD_PROCESSES)]
    with multiprocessing.get_context("fork").Pool(LOAD_PROCESSES) as pool:
        results = pool.map(_load_process, jobs)
    return ([x for lat, _ in results for x in lat], sum(c[0] for _, c in results), sum(c[1] for _, c in results),
            sum(c[2] for _, c in results))


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

    def do_POST(self) -> None:
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


def stored(where: Path | str) -> int:
    if isinstance(where, str):
        with psycopg.connect(where) as c:
            return c.execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0]
    return sqlite3.connect(where).execute("SELECT COUNT(*) FROM heartbeats").fetchone()[0]


def report(name: str, latencies: list[float], errors: int) -> tuple[float, float, float]:
    rate = len(latencies) / MEASURE_S
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[int(len(ms) * 0.99)]
    print(f"{name:<9} {rate:8.0f} acknowledged heartbeats/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   "
          f"refused/failed {errors}")
    return rate, p50, p99


def run_hubs(work: Path, name: str, database_url: str = "", replicas: int = 1, rate: float | None = None
             ) -> tuple[list[float], int, int, int, Path | str]:
    """`replicas` hubs of one site (on `database_url`, else SQLite) under the load (open-loop at
    `rate`, else closed); the store's location too."""
    cfg_path = init_site(work / name)
    cfg = config.load(cfg_path)
    cfg.hub.database_url = database_url
    config.save(cfg, cfg_path)
    where: Path | str = database_url or work / name / "data" / "fleet.db"
    devices = register_many(where, N_DEVICES)
    ports = [free_port() for _ in range(replicas)]
    procs = [subprocess.Popen([sys.executable, "-m", "picoctl", "--config", str(cfg_path), "serve", "--host",
                               "127.0.0.1", "--port", str(port)], preexec_fn=lambda: os.sched_setaffinity(0, SERVER_CPU))
             for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_listening(port, proc)
        latencies, errors, acked, doubles = run_load(ports, devices, rate)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    return latencies, errors, acked, doubles, where


def run_baseline(work: Path) -> tuple[list[float], int, int, int, Path]:
    port = free_port()
    db = work / "baseline.db"
    devices = register_many(db, N_DEVICES)
    proc = multiprocessing.get_context("fork").Process(target=_serve_baseline, args=(str(db), port), daemon=True)
    proc.start()
    try:
        wait_listening(port, proc)
        latencies, errors, acked, doubles = run_load([port], devices)
    finally:
        proc.terminate()
        proc.join(10)
    return latencies, errors, acked, doubles, db


def lost(name: str, where: Path | str, acked: int) -> int:
    n = stored(where)
    print(f"{name:<9} stored {n} of {acked} acknowledged heartbeats{'' if n >= acked else '  LOST SOME'}")
    return max(0, acked - n)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--boards", type=int, default=FLEET_BOARDS, help="the fleet of the open-loop runs")
    boards = parser.parse_args().boards
    if len(os.sched_getaffinity(0)) < 2:
        global SERVER_CPU, LOAD_CPUS
        SERVER_CPU = LOAD_CPUS = set(os.sched_getaffinity(0))
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server programs not found (apt-get install postgresql)")
    print(f"{N_DEVICES} devices, {CONNECTIONS} keep-alive connections from {LOAD_PROCESSES} processes, "
          f"{MEASURE_S:g} s measured after {WARMUP_S:g} s warm-up; servers on CPU {sorted(SERVER_CPU)}")
    server = TempPostgres(bindir)
    try:
        assert server.proc is not None
        for pid in [server.proc.pid, *_children(server.proc.pid)]:  # the postmaster's later backends inherit it
            os.sched_setaffinity(pid, SERVER_CPU)
        with tempfile.TemporaryDirectory(prefix="picoctl-bench-") as tmp:
            work = Path(tmp)
            runs = {
                "hub": run_hubs(work, "hub"),
                "pg": run_hubs(work, "pg", server.create_database("single")),
                "baseline": run_baseline(work),
                "replicas": run_hubs(work, "replicas", server.create_database("replicas"), replicas=2),
                "hub_open": run_hubs(work, "hub_open", rate=boards / HEARTBEAT_S),
                "pg_open": run_hubs(work, "pg_open", server.create_database("open"), rate=boards / HEARTBEAT_S),
            }
            figures = {name: report(name, r[0], r[1]) for name, r in runs.items()}
            lost_acks = {name: lost(name, r[4], r[2]) for name, r in runs.items()}
    finally:
        server.close()
    (hub_rate, hub_p50, hub_p99), (pg_rate, pg_p50, pg_p99) = figures["hub"], figures["pg"]
    base_rate, _, base_p99 = figures["baseline"]
    rep_rate, _, rep_p99 = figures["replicas"]
    (open_rate, open_p50, open_p99), (_, pg_open_p50, pg_open_p99) = figures["hub_open"], figures["pg_open"]
    doubles = runs["replicas"][3]
    print(f"replicas  {doubles} heartbeats accepted by both replicas (every one was sent to both)")
    if any(lost_acks.values()) or doubles:
        raise SystemExit("acknowledged heartbeats are missing from a store, or a counter was accepted twice")
    print(f"RESULT hb_per_s={hub_rate:.0f} p99_ms={hub_p99:.1f} p50_ms={hub_p50:.1f} "
          f"pg_hb_per_s={pg_rate:.0f} pg_p99_ms={pg_p99:.1f} pg_p50_ms={pg_p50:.1f} pg_ratio={pg_rate / hub_rate:.2f} "
          f"baseline_hb_per_s={base_rate:.0f} baseline_p99_ms={base_p99:.1f} ratio={hub_rate / base_rate:.2f} "
          f"replicas_hb_per_s={rep_rate:.0f} replicas_p99_ms={rep_p99:.1f} "
          f"fleet_boards={boards} fleet_hb_per_s={open_rate:.0f} fleet_p50_ms={open_p50:.1f} "
          f"fleet_p99_ms={open_p99:.1f} pg_fleet_p50_ms={pg_open_p50:.1f} pg_fleet_p99_ms={pg_open_p99:.1f} "
          f"lost_acks={sum(lost_acks.values())} double_accepts={doubles}")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


if __name__ == "__main__":
    main()
