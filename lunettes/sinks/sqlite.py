"""SQLiteSink: the embedded default store of pod records (a file, created on first use).

The table, its columns and indexes are :mod:`lunettes.store.sqlite_schema`'s, shared with
the API's reader (:mod:`lunettes.api.store`).

A write never makes a Pod's row know less: each record is merged with the stored one of its
UID (:func:`lunettes.model.merge.merge`) in the transaction that writes it, so replaying a
log twice, or its rotated halves in separate runs, keeps the most complete record.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from lunettes.config.errors import Section
from lunettes.model.merge import merge
from lunettes.model.record import PodRecord
from lunettes.model.results import Results
from lunettes.private_files import create_private
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError
from lunettes.store.sqlite_schema import COLUMNS, ensure_schema, row_of

BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another process's transaction before giving up."""


def _journal_wal(db: sqlite3.Connection) -> None:
    """Put the store in WAL mode. When several processes open a new store at once, the
    switch can fail at once with "database is locked" (SQLite calls no busy handler for
    it): try again until the busy timeout has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


_INSERT = (f"INSERT OR REPLACE INTO pods ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(COLUMNS))})")
_READ_CHUNK = 500
"""UIDs per ``SELECT ... IN`` (SQLite allows 32766 parameters; this keeps plans small)."""


def merged_rows(db: sqlite3.Connection, batch: Sequence[PodRecord],
                results: Results | None = None) -> list[tuple[Any, ...]]:
    """The rows to write for ``batch``: each record merged with the stored one and with the
    batch's earlier records of its UID. Call inside the writing transaction."""
    records: dict[str, dict[str, Any]] = {}
    for record in batch:
        data = record.to_dict()
        records[record.uid] = merge(records.get(record.uid), data)
    uids = list(records)
    for start in range(0, len(uids), _READ_CHUNK):
        chunk = uids[start:start + _READ_CHUNK]
        marks = ", ".join("?" * len(chunk))
        for uid, blob in db.execute(f"SELECT uid, record FROM pods WHERE uid IN ({marks})",
                                    chunk):
            records[uid] = merge(orjson.loads(blob), records[uid])
    return [row_of(data, results) for data in records.values()]


class SQLiteSink:
    """Merges pod records by UID into a SQLite file (replays never duplicate or regress).

    Reading helpers (:meth:`get`, :meth:`by_name`, :meth:`count`) serve the CLI and tests;
    the API reads the same file through :class:`lunettes.api.store.SQLiteStore`, with its
    own connections (WAL mode: readers never block the writer). Several processes may
    write one store (``lunettes replay --workers N``): transactions take the write lock as
    they begin and wait up to :data:`BUSY_TIMEOUT_S` for one another, and the store is
    created (or upgraded) by one of them.
    """

    def __init__(self, path: str | Path, results: Results | None = None) -> None:
        self.path = Path(path)
        self.results = results
        """Which results play the SLO and diagnosis roles (the query columns); None: the
        results named for them."""
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> SQLiteSink:
        path = section.get("path", "lunettes.db", str)
        section.check_unknown()
        return cls(path, context.results)

    def _conn(self) -> sqlite3.Connection:
        """The connection, opened (and the schema created) on first use."""
        if self._closed:
            raise SinkClosedError(f"sqlite store {self.path} is shut down")
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)  # SQLite gives -wal and -shm the store's mode
            # Several processes may write one store (replay --workers N): each waits up to
            # BUSY_TIMEOUT_S for the others' transactions, and takes the write lock when its
            # transaction begins (IMMEDIATE), not halfway through it.
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S,
                                       isolation_level="IMMEDIATE", check_same_thread=False)
            _journal_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            ensure_schema(self._db, self.results)
        return self._db

    def export(self, batch: Sequence[PodRecord]) -> None:
        """Merge the batch into the store in one transaction. It takes the write lock as it
        begins (``BEGIN IMMEDIATE``), before the stored records are read: another process
        cannot write a record of the same UID between the read and the write."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_INSERT, merged_rows(db, batch, self.results))
                db.commit()
            except BaseException:
                db.rollback()
                raise

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return not self._closed

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def get(self, uid: str) -> dict[str, Any] | None:
        """The stored record of a Pod, or None."""
        with self._lock:
            row = self._conn().execute("SELECT record FROM pods WHERE uid = ?",
                                       (uid,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def by_name(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Every stored incarnation of a Pod name, newest first."""
        with self._lock:
            rows = self._conn().execute(
                "SELECT record FROM pods WHERE namespace = ? AND name = ? "
                "ORDER BY at_us DESC, uid DESC", (namespace, name)).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT count(*) FROM pods").fetchone()[0])
