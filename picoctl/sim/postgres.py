"""A throwaway PostgreSQL server on 127.0.0.1, for the tests and the benchmarks.

`initdb` makes a cluster in a temporary folder and `postgres` serves it on a free port with its
defaults (fsync and synchronous_commit on: a commit is durable). Run as root, the server runs as the
`postgres` user the Debian package creates (PostgreSQL refuses to run as root). `close` removes it all.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from .local_hub import free_port

START_TIMEOUT_S = 30.0


def find_bindir() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (the newest major version), if installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


class TempPostgres:
    """A PostgreSQL cluster of its own; `url(name)` makes (once) and names a database in it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="picoctl-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "picoctl", "-A", "trust", "-E", "UTF8",
                   "--no-instructions"])
        self.start()

    def _as_user(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(cmd, capture_output=True, preexec_fn=self._as_user)
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {done.stderr.decode(errors='replace')[-2000:]}")

    def start(self) -> None:
        """Serve the cluster (again, after `stop`) and wait until it takes connections."""
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.root), "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._as_user)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{(self.root / 'server.log').read_text()[-2000:]}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not start in {START_TIMEOUT_S}s")

    def stop(self) -> None:
        """Fast shutdown: sessions are cut, committed data stays."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
        self.proc = None

    def url(self, database: str) -> str:
        return f"postgresql://picoctl@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
