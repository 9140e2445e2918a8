"""Moving a site from SQLite to PostgreSQL: `picoctl hub migrate --to postgresql://…`.

Every table is copied whole (ids included, so the event log and the offers' seqs read the same) in
one transaction, into a database that holds nothing yet. The copy is then checked: the row count of
every table and the last counter of every device, read back from PostgreSQL. The site's artifacts
(`data/blobs`) go into the database in the same transaction, for every replica to serve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import PicoctlError
from ..protocol import HEX64
from .blobs import share
from .db import ERRORS, Store, first_line, redact
from .state import DB_NAME, LOCK_NAME, single_writer_lock

SKIPPED = ("schema_version", "sqlite_sequence")


def _tables(src: Store) -> list[str]:
    """The site's tables, each after those it references."""
    c = src.conn
    names = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
             if r[0] not in SKIPPED and not r[0].startswith("sqlite_")]
    refs = {n: {r["table"] for r in c.execute(f"PRAGMA foreign_key_list({n})")} - {n} for n in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ordered += [n for n in names if n not in ordered and refs[n] <= set(ordered)]
    return ordered


def _columns(src: Store, table: str) -> list[str]:
    return [r["name"] for r in src.conn.execute(f"PRAGMA table_info({table})")]


def _count(c: Any, table: str) -> int:
    row = c.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()
    return int(row["n"])


def _last_counters(c: Any) -> dict[str, int]:
    return {r["id"]: int(r["last_counter"]) for r in c.execute("SELECT id, last_counter FROM devices").fetchall()}


def migrate_site(data_dir: Path, url: str) -> dict[str, int]:
    """Copy the SQLite site in `data_dir` into the empty PostgreSQL database at `url`; rows per table."""
    db = data_dir / DB_NAME
    if not db.is_file():
        raise PicoctlError(f"{db}: no SQLite store to migrate")
    lock = single_writer_lock(data_dir / LOCK_NAME)  # no hub may write the site while it is copied
    try:
        return _copy(db, url)
    except ERRORS as exc:
        raise PicoctlError(f"migrate to {redact(url)}: {first_line(exc)}; nothing was kept there") from None
    finally:
        os.close(lock)


def _copy(db: Path, url: str) -> dict[str, int]:
    src, dst = Store(db), Store(url)
    try:
        tables = _tables(src)
        with dst.reading() as c:
            taken = [t for t in tables if _count(c, t)]
        if taken:
            raise PicoctlError(f"{redact(url)} is not empty (rows in {', '.join(taken)}); migrate only into a new"
                               " database")
        counts: dict[str, int] = {}
        with src.reading() as s, dst.transaction() as c:
            for table in tables:
                cols = _columns(src, table)
                rows = [tuple(r) for r in s.execute(f"SELECT {', '.join(cols)} FROM {table}")]
                c.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
                if rows and "id" in cols and isinstance(rows[0][cols.index("id")], int):  # an identity key goes on
                    c.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id')::regclass,"
                              f" (SELECT MAX(id) FROM {table}))")
                counts[table] = len(rows)
            for blob in sorted((db.parent / "blobs").glob("??/*")):
                if HEX64.fullmatch(blob.name):
                    share(c, blob.name, blob)
            expected = _last_counters(s)
        with dst.reading() as c:
            copied = {t: _count(c, t) for t in tables}
            if copied != counts or _last_counters(c) != expected:
                raise PicoctlError(f"the copy in {redact(url)} does not match the site: {copied} rows, expected {counts}")
        return counts
    finally:
        src.close()
        dst.close()
