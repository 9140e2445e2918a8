"""Connections to the hub's database: SQLite in the data folder, or PostgreSQL at `hub.database_url`.

Both run the same queries (picoctl.hub.store, written with `?` placeholders) and the same migrations
(written in SQLite's dialect; `postgres_sql` turns integer keys, REAL and the append-only triggers
into PostgreSQL's). A transaction returns only once committed and durable: SQLite in WAL mode with
`synchronous=FULL`, PostgreSQL with its default `synchronous_commit=on`.

With PostgreSQL several hubs share the database. What only one of them may do at a time (the rollout
engine's timers) is held with a session advisory lock (`Leadership`), and every hub hears the changes
the others commit through LISTEN/NOTIFY (`Listener`). Each change gets a fleet-wide event id, one
greater than the last committed (`EVENT_IDS`, taken in COMMIT's round trip, so the ids follow the
commit order and a transaction rolled back takes none): every hub publishes every change, its own
included, as it hears them, so each hub's event stream is the same messages under the same ids.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from ..errors import PicoctlError
from . import store as schema

ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
CONNECT_TIMEOUT_S = 10
MIGRATE_LOCK = 0x7069636F  # "pico": one hub migrates at a time
LEADER_LOCK = 0x7069636F + 1  # held by the hub that runs the rollout engine's timers
CHANNEL = "picoctl_changes"
EVENT_IDS = "picoctl_event_ids"  # one row: the next event id of the fleet (PostgreSQL only)
BLOBS = "picoctl_blobs"  # the artifacts, in chunks, for every replica to serve (PostgreSQL only: picoctl.hub.blobs)
T = TypeVar("T")


class SqliteDb(sqlite3.Connection):
    dialect = "sqlite"


class PgDb:
    """A psycopg connection that takes the queries' `?` placeholders."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.conn = conn
        self._at_commit: list[str] = []

    def execute(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[dict[str, Any]]:
        return self.conn.execute(_placeholders(sql), tuple(args))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_placeholders(sql), rows)

    def begin(self) -> None:
        self._at_commit = []
        self.conn.execute("BEGIN")

    def at_commit(self, sql: str) -> None:
        """Run `sql` (complete, without placeholders) at the end of the transaction, in COMMIT's round trip."""
        self._at_commit.append(sql)

    def commit(self) -> None:
        statements, self._at_commit = [*self._at_commit, "COMMIT"], []
        self.conn.execute(";\n".join(statements))  # no parameters: one query of several statements

    def rollback(self) -> None:
        self._at_commit = []
        if self.usable:
            self.conn.execute("ROLLBACK")

    @property
    def usable(self) -> bool:
        return not (self.conn.closed or self.conn.broken)

    def close(self) -> None:
        self.conn.close()


@lru_cache(maxsize=1024)
def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def is_postgres(location: str | Path) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """A database URL without its password, fit for messages."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def pg_connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """A connection in autocommit mode (transactions are opened by hand)."""
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S,
                           application_name="picoctl hub")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- the schema in PostgreSQL's dialect --------------------------------------------------------------

_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) BEFORE (UPDATE|DELETE) ON (\w+)\s+BEGIN SELECT RAISE\(ABORT,"
                      r" '([^']*)'\); END;", re.S)


def postgres_sql(script: str) -> str:
    """A migration written for SQLite, in PostgreSQL's words.

    Integer keys become identity columns, REAL double precision, INTEGER bigint (SQLite's are 64-bit),
    and a `BEFORE UPDATE|DELETE ... RAISE(ABORT, msg)` trigger a PL/pgSQL function raising msg (an
    append-only table refuses TRUNCATE as well).
    """
    def trigger(m: re.Match[str]) -> str:
        name, op, table, message = m.groups()
        extra = (f"\nCREATE TRIGGER {name}_truncate BEFORE TRUNCATE ON {table}"
                 f" FOR EACH STATEMENT EXECUTE FUNCTION {name}();") if op == "DELETE" else ""
        return (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS"
                f" $fn$ BEGIN RAISE EXCEPTION '{message}'; END $fn$;\n"
                f"CREATE TRIGGER {name} BEFORE {op} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();{extra}")

    script = _TRIGGER.sub(trigger, script)
    script = re.sub(r"\bINTEGER PRIMARY KEY( AUTOINCREMENT)?\b", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                    script)
    script = re.sub(r"\bREAL\b", "DOUBLE PRECISION", script)
    return re.sub(r"\bINTEGER\b", "BIGINT", script)


def _greatest(*values: Any) -> Any:
    """PostgreSQL's GREATEST for SQLite: the largest argument that is not NULL."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


# --- the store -----------------------------------------------------------------------------------

class Store:
    """One connection to the fleet database (a path: SQLite; a postgresql:// URL: PostgreSQL).

    Transactions and reads are serialised by a lock. A PostgreSQL connection that broke (the server
    restarted, the network went) is opened again by the next transaction.
    """

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self.dialect = "postgresql" if is_postgres(location) else "sqlite"
        self._lock = threading.RLock()
        self.conn: Any = self._connect()
        self.migrate()

    def _connect(self) -> Any:
        if self.dialect == "postgresql":
            return PgDb(pg_connect(self.location))
        conn = sqlite3.connect(self.location, check_same_thread=False, isolation_level=None, timeout=30,
                               factory=SqliteDb)
        conn.row_factory = sqlite3.Row
        conn.create_function("GREATEST", -1, _greatest, deterministic=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _db(self) -> Any:
        if self.dialect == "postgresql" and not self.conn.usable:
            self.conn.close()
            self.conn = self._connect()
        return self.conn

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._version(self._db())

    def _version(self, c: Any) -> int:
        if self.dialect == "sqlite":
            return int(c.execute("PRAGMA user_version").fetchone()[0])
        c.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        row = c.execute("SELECT version FROM schema_version").fetchone()
        return int(row["version"]) if row else 0

    def migrate(self) -> None:
        """Apply every migration past the stored version, each in its own transaction.

        A database of a newer schema than this picoctl knows is refused: its code would misread it.
        """
        with self._lock:
            c = self._db()
            if self.dialect == "sqlite":
                current = self._check_version(self._version(c))
                for number, script in enumerate(schema.MIGRATIONS[current:], start=current + 1):
                    c.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
                return
            c.execute("BEGIN")
            try:
                c.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
                current = self._check_version(self._version(c))
                for number, script in enumerate(schema.MIGRATIONS[current:], start=current + 1):
                    c.conn.execute(postgres_sql(script))
                    c.execute("DELETE FROM schema_version")
                    c.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
                # not numbered migrations: SQLite has no use for these, and `hub migrate` fills them itself
                c.execute(f"CREATE TABLE IF NOT EXISTS {EVENT_IDS} (next BIGINT NOT NULL)")
                c.execute(f"INSERT INTO {EVENT_IDS} (next) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM {EVENT_IDS})")
                c.execute(f"CREATE TABLE IF NOT EXISTS {BLOBS} (sha256 TEXT NOT NULL, n INTEGER NOT NULL,"
                          " data BYTEA NOT NULL, PRIMARY KEY (sha256, n))")
                c.execute("COMMIT")
            except BaseException:
                if c.usable:
                    c.execute("ROLLBACK")
                raise

    def _check_version(self, current: int) -> int:
        known = len(schema.MIGRATIONS)
        if current > known:
            raise PicoctlError(f"the store's schema is version {current}, newer than this picoctl knows ({known}):"
                               " upgrade picoctl")
        return current

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction, committed (durably) when the block leaves without error."""
        with self._lock:
            c = self._db()
            if self.dialect == "sqlite":
                c.execute("BEGIN IMMEDIATE")
            else:
                c.begin()
            try:
                yield c
                if self.dialect == "sqlite":
                    c.execute("COMMIT")
                else:
                    c.commit()
            except BaseException:
                self._rollback(c)
                raise

    def _rollback(self, c: Any) -> None:
        if self.dialect == "sqlite":
            if c.in_transaction:  # a failed COMMIT (e.g. a full disk) leaves it open
                c.execute("ROLLBACK")
        else:
            c.rollback()

    def attempt(self, c: Any, work: Callable[[Any], T]) -> T | Exception:
        """`work(c)` inside a savepoint of the open transaction: its result, or the exception it
        raised with its writes undone (the transaction goes on). A lost connection is raised."""
        c.execute("SAVEPOINT job")
        try:
            out: T | Exception = work(c)
        except Exception as exc:  # handed back to the caller, unless the connection is gone
            if self.lost(exc, c):
                raise
            c.execute("ROLLBACK TO SAVEPOINT job")
            out = exc
        c.execute("RELEASE SAVEPOINT job")
        return out

    def lost(self, exc: Exception, c: Any) -> bool:
        """Whether `exc` means the connection is gone (the transaction with it), not that one statement failed."""
        return isinstance(exc, ERRORS) and self.dialect == "postgresql" and not c.usable

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """The connection, held for several reads in a row (one consistent view)."""
        with self._lock:
            c = self._db()
            c.execute("BEGIN" if self.dialect == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield c
            finally:
                if self.dialect == "sqlite" or c.usable:
                    c.execute("COMMIT")


# --- several hubs on one PostgreSQL database -----------------------------------------------------------

class Leadership:
    """Whether this hub runs the work only one hub may run (SQLite: always; PostgreSQL: the advisory lock).

    `held()` is asked before each round of that work: it keeps a session lock on its own connection,
    takes it when free, and lets go of it (reconnecting later) when that connection is lost, so the
    work moves to another hub within one round of its `held()` after this one dies.
    """

    def __init__(self, location: str) -> None:
        self.location = location
        self._db: PgDb | None = None
        self._held = False

    def held(self) -> bool:
        if not is_postgres(self.location):
            return True
        try:
            if self._db is None or not self._db.usable:
                self._held = False
                self._db = PgDb(pg_connect(self.location))
            if self._held:
                self._db.execute("SELECT 1").fetchone()
            else:
                row = self._db.execute("SELECT pg_try_advisory_lock(?) AS got", (LEADER_LOCK,)).fetchone()
                self._held = bool(row and row["got"])
        except psycopg.Error:
            self._held = False
        return self._held

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class Listener:
    """Hears the changes every hub commits (NOTIFY on CHANNEL), this one's too, and hands each to
    `deliver(id, event, data)` in commit order.

    Runs on its own thread and connection. Once listening it calls `joined(next_id, missed)`: the id
    the next change will get, and whether changes may have gone unheard (it had lost its connection).
    """

    def __init__(self, url: str, deliver: Callable[[int, str, str], None],
                 joined: Callable[[int, bool], None]) -> None:
        self.url = url
        self.deliver, self.joined = deliver, joined
        self._stop = threading.Event()
        self._parts: dict[str, list[str]] = {}
        self._thread = threading.Thread(target=self._run, name="picoctl-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                with pg_connect(self.url) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    row = conn.execute(f"SELECT next FROM {EVENT_IDS}").fetchone()  # after LISTEN: none slips by
                    self._parts.clear()
                    self.joined(int(row["next"]) if row else 1, not first)
                    first = False
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            self._heard(n.payload)
            except psycopg.Error:
                self._stop.wait(1.0)

    def _heard(self, payload: str) -> None:
        sender, message_id, part, parts, text = payload.split("|", 4)
        key = f"{sender}|{message_id}"
        self._parts.setdefault(key, []).append(text)
        if int(part) + 1 == int(parts):
            event, _, data = "".join(self._parts.pop(key)).partition("|")
            self.deliver(int(message_id), event, data)


NOTIFY_CHARS = 1900  # of a message per NOTIFY payload: at most 4 bytes each, under PostgreSQL's 8000


def notify(c: Any, hub_id: str, changes: Sequence[tuple[str, str]]) -> None:
    """Give `changes` ((event, JSON) each) the fleet's next event ids and tell every hub about them,
    in this transaction's COMMIT (so only if it commits, and in commit order). Nothing on SQLite,
    where the one hub publishes its changes itself."""
    if not isinstance(c, PgDb) or not changes:
        return
    ks, parts = [], []
    for k, (event, data) in enumerate(changes):
        text = f"{event}|{data}"
        chunks = [text[i:i + NOTIFY_CHARS] for i in range(0, len(text), NOTIFY_CHARS)]
        ks += [k] * len(chunks)
        parts += [f"{i}|{len(chunks)}|{chunk}" for i, chunk in enumerate(chunks)]
    # The UPDATE holds the counter's row until COMMIT: the next transaction to take ids waits for this one.
    c.at_commit(pgsql.SQL("WITH ids AS (UPDATE {t} SET next = next + {n} RETURNING next - {n} AS first) "
                          "SELECT pg_notify({ch}, {hub} || '|' || (ids.first + m.k) || '|' || m.p) "
                          "FROM ids, unnest({ks}::bigint[], {ps}::text[]) WITH ORDINALITY AS m(k, p, i) ORDER BY m.i")
                .format(t=pgsql.Identifier(EVENT_IDS), n=pgsql.Literal(len(changes)), ch=pgsql.Literal(CHANNEL),
                        hub=pgsql.Literal(hub_id), ks=pgsql.Literal(ks), ps=pgsql.Literal(parts)).as_string(c.conn))
