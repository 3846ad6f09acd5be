"""SQLiteSink: the embedded default store of pod records (a file, created on first use)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from lunettes.config.errors import Section
from lunettes.model.record import PodRecord
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError

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
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS pods_by_name ON pods (namespace, name, created_us);
CREATE INDEX IF NOT EXISTS pods_by_created ON pods (created_us);
CREATE INDEX IF NOT EXISTS pods_by_outcome ON pods (outcome, created_us);
CREATE INDEX IF NOT EXISTS pods_by_node ON pods (node, created_us);
"""


class SQLiteSink:
    """Upserts pod records by UID into a SQLite file (replays never duplicate).

    Reading helpers (:meth:`get`, :meth:`by_name`, :meth:`count`) serve the CLI and tests;
    the API opens its own read connections on the same file.
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
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        return self._db

    def export(self, batch: Sequence[PodRecord]) -> None:
        rows = [
            (r.uid, r.namespace, r.name, r.node, r.created_us, r.finished_us, r.outcome,
             int(r.partial), r.owner_kind, r.owner_name, r.duration_s,
             orjson.dumps(r.to_dict()))
            for r in batch
        ]
        with self._lock:
            db = self._conn()
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO pods VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

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
                "ORDER BY created_us DESC", (namespace, name)).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT count(*) FROM pods").fetchone()[0])
