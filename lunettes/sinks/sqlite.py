"""SQLiteSink: the embedded default store of pod records (a file, created on first use).

One row per Pod (``uid`` is the key): the JSON record, plus the
columns the API filters and sorts on, each with an index. ``at_us`` is the Pod's time
(created, else finished, else 0): the key of time ranges and of the default sort.
:func:`ensure_schema` creates the table or upgrades a store written by an older lunettes
(adding the columns and filling them from the stored records), so the sink and the API's
reader (:mod:`lunettes.api.store`) agree on one schema.

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
from lunettes.model.times import parse_time
from lunettes.private_files import create_private
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another process's transaction before giving up."""

COLUMNS = (
    "uid", "namespace", "name", "node", "created_us", "finished_us", "outcome", "partial",
    "owner_kind", "owner_name", "duration_s", "record",
    # version 2: what the API filters, sorts and sums on
    "at_us", "slo_result", "slo_class", "reason", "platform_s", "total_s",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS pods (
    uid TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    node TEXT NOT NULL,
    created_us INTEGER,
    finished_us INTEGER,
    outcome TEXT NOT NULL,
    partial INTEGER NOT NULL,
    owner_kind TEXT NOT NULL,
    owner_name TEXT NOT NULL,
    duration_s REAL,
    record BLOB NOT NULL,
    at_us INTEGER NOT NULL DEFAULT 0,
    slo_result TEXT NOT NULL DEFAULT '',
    slo_class TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    platform_s REAL,
    total_s REAL
);
"""

_ADDED = {  # version 2 columns, for stores written by version 1
    "at_us": "INTEGER NOT NULL DEFAULT 0",
    "slo_result": "TEXT NOT NULL DEFAULT ''",
    "slo_class": "TEXT NOT NULL DEFAULT ''",
    "reason": "TEXT NOT NULL DEFAULT ''",
    "platform_s": "REAL",
    "total_s": "REAL",
}

INDEXES = """
DROP INDEX IF EXISTS pods_by_created;
DROP INDEX IF EXISTS pods_by_outcome;
DROP INDEX IF EXISTS pods_by_node;
DROP INDEX IF EXISTS pods_by_name;
CREATE INDEX IF NOT EXISTS pods_by_time ON pods (at_us, uid);
CREATE INDEX IF NOT EXISTS pods_by_ns_name ON pods (namespace, name, at_us);
CREATE INDEX IF NOT EXISTS pods_by_ns_time ON pods (namespace, at_us);
CREATE INDEX IF NOT EXISTS pods_by_outcome_time ON pods (outcome, at_us);
CREATE INDEX IF NOT EXISTS pods_by_node_time ON pods (node, at_us);
CREATE INDEX IF NOT EXISTS pods_by_slo_time ON pods (slo_result, at_us);
CREATE INDEX IF NOT EXISTS pods_by_reason_time ON pods (reason, at_us);
CREATE INDEX IF NOT EXISTS pods_by_owner_time ON pods (owner_kind, owner_name, at_us);
CREATE INDEX IF NOT EXISTS pods_by_name_time ON pods (name, at_us);
-- version 3: the SLO summary reads this index alone, never the rows (whose records are
-- kilobytes: the columns after them are reached through their overflow pages)
CREATE INDEX IF NOT EXISTS pods_slo_summary ON pods (slo_result, namespace, slo_class, outcome,
    at_us, platform_s, total_s);
"""


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create the table and indexes, or upgrade a version-1 store in place.

    Safe when several processes open one store at once (``lunettes replay --workers N``):
    the work runs in one ``BEGIN IMMEDIATE`` transaction (one writer at a time, the others
    wait out the connection's busy timeout) that first reads the version again, so the
    process that comes second finds the schema done and changes nothing.
    """
    if _version(db) >= SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if _version(db) < SCHEMA_VERSION:
            _create_or_upgrade(db)
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _create_or_upgrade(db: sqlite3.Connection) -> None:
    """The schema work of :func:`ensure_schema`, inside its transaction (no
    ``executescript``: it would commit first)."""
    for statement in _statements(SCHEMA):
        db.execute(statement)
    have = {row[1] for row in db.execute("PRAGMA table_info(pods)")}
    missing = [c for c in _ADDED if c not in have]
    for column in missing:
        db.execute(f"ALTER TABLE pods ADD COLUMN {column} {_ADDED[column]}")
    if missing:
        rows = db.execute("SELECT uid, record FROM pods").fetchall()
        db.executemany(
            "UPDATE pods SET at_us=?, slo_result=?, slo_class=?, reason=?, platform_s=?, "
            "total_s=? WHERE uid=?",
            [(*query_columns(orjson.loads(record), created_us=None)[0:6], uid)
             for uid, record in rows])
    for statement in _statements(INDEXES):
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def query_columns(record: dict[str, Any], created_us: int | None
                  ) -> tuple[int, str, str, str, float | None, float | None]:
    """(at_us, slo_result, slo_class, reason, platform_s, total_s) of a JSON record."""
    at_us = created_us
    if at_us is None:
        for key in ("created", "finished", "last_seen"):
            if record.get(key):
                at_us = parse_time(record[key])
                break
    slo = record.get("slo")
    slo = slo if isinstance(slo, dict) else {}
    diagnosis = record.get("diagnosis")
    diagnosis = diagnosis if isinstance(diagnosis, dict) else {}
    return (at_us or 0, str(slo.get("result") or ""), str(slo.get("class") or ""),
            str(diagnosis.get("reason") or ""), _number(slo.get("platform_s")),
            _number(slo.get("total_s")))


def row_of(data: dict[str, Any]) -> tuple[Any, ...]:
    """The row of a JSON record (:meth:`PodRecord.to_dict`), in :data:`COLUMNS` order."""
    created_us = _optional_time(data.get("created"))
    columns = query_columns(data, created_us)
    return (data["uid"], data["namespace"], data["name"], data["node"], created_us,
            _optional_time(data.get("finished")), data["outcome"], int(bool(data["partial"])),
            data["owner_kind"], data["owner_name"], data.get("duration_s"),
            orjson.dumps(data), *columns)


def _optional_time(text: str | None) -> int | None:
    return None if text is None else parse_time(text)


_INSERT = (f"INSERT OR REPLACE INTO pods ({', '.join(COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(COLUMNS))})")
_READ_CHUNK = 500
"""UIDs per ``SELECT ... IN`` (SQLite allows 32766 parameters; this keeps plans small)."""


def merged_rows(db: sqlite3.Connection, batch: Sequence[PodRecord]) -> list[tuple[Any, ...]]:
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
    return [row_of(data) for data in records.values()]


class SQLiteSink:
    """Merges pod records by UID into a SQLite file (replays never duplicate or regress).

    Reading helpers (:meth:`get`, :meth:`by_name`, :meth:`count`) serve the CLI and tests;
    the API reads the same file through :class:`lunettes.api.store.SQLiteStore`, with its
    own connections (WAL mode: readers never block the writer). Several processes may
    write one store (``lunettes replay --workers N``): transactions take the write lock as
    they begin and wait up to :data:`BUSY_TIMEOUT_S` for one another, and the store is
    created (or upgraded) by one of them.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> SQLiteSink:
        path = section.get("path", "lunettes.db", str)
        section.check_unknown()
        return cls(path)

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
            ensure_schema(self._db)
        return self._db

    def export(self, batch: Sequence[PodRecord]) -> None:
        """Merge the batch into the store in one transaction. It takes the write lock as it
        begins (``BEGIN IMMEDIATE``), before the stored records are read: another process
        cannot write a record of the same UID between the read and the write."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_INSERT, merged_rows(db, batch))
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
