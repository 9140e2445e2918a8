"""pi-sensors: a small HTTP API of this Pi's readings, standard library only.

    GET /healthz   {"ok": true, "version": "1.2.0"}  (picoctl pi deploy checks the version answering)
    GET /version   {"version": "1.2.0"}  (from the release meta picoctl writes, else VERSION, else "dev")
    GET /readings  CPU temperature, load, uptime and free disk of this machine

    python main.py [--host 0.0.0.0] [--port 5000]   (or $PI_SENSORS_HOST / $PI_SENSORS_PORT)
"""

from __future__ import annotations

import argparse
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sensors import read_all

HERE = Path(__file__).resolve().parent


def app_version() -> str:
    try:
        return json.loads((HERE / ".picoctl-release.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        return (HERE / "VERSION").read_text().strip()
    except OSError:
        return "dev"


VERSION = app_version()


class Handler(BaseHTTPRequestHandler):
    server_version = "pi-sensors"

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        routes = {
            "/healthz": lambda: {"ok": True, "version": VERSION},
            "/version": lambda: {"version": VERSION},
            "/readings": read_all,
        }
        route = routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._send(404, {"error": f"no such path {self.path}"})
        else:
            self._send(200, route())

    def log_message(self, format: str, *args: object) -> None:  # quiet: systemd's journal gets errors only
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("PI_SENSORS_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PI_SENSORS_PORT", "5000")))
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"pi-sensors {VERSION} on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
