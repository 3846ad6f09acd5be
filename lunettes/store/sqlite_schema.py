"""The SQLite store's schema: the table of pod records, its query columns and indexes.

One row per Pod (``uid`` is the key): the JSON record, plus the columns the API filters and
sorts on, each with an index. ``at_us`` is the Pod's time (created, else finished, else 0):
the key of time ranges and of the default sort. The SLO and diagnosis columns are read from
the results playing those roles (:class:`lunettes.model.results.Results`), whatever the
analyzers are named. :func:`ensure_schema` creates the table or
upgrades a store written by an older lunettes (adding the columns and filling them from the
stored records). The writer (:mod:`lunettes.sinks.sqlite`) and the API's reader
(:mod:`lunettes.api.store`) both open the store through it, so they agree on one schema.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from lunettes.analyzers.base import DIAGNOSIS, SLO
from lunettes.model.results import Results
from lunettes.model.times import parse_time

SCHEMA_VERSION = 3

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


def ensure_schema(db: sqlite3.Connection, results: Results | None = None) -> None:
    """Create the table and indexes, or upgrade a version-1 store in place (its query
    columns filled by ``results`` as :func:`query_columns` does).

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
            _create_or_upgrade(db, results or Results())
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _create_or_upgrade(db: sqlite3.Connection, results: Results) -> None:
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
            [(*query_columns(orjson.loads(record), None, results), uid)
             for uid, record in rows])
    for statement in _statements(INDEXES):
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def query_columns(record: dict[str, Any], created_us: int | None,
                  results: Results | None = None
                  ) -> tuple[int, str, str, str, float | None, float | None]:
    """(at_us, slo_result, slo_class, reason, platform_s, total_s) of a JSON record: the
    results playing the SLO and diagnosis roles in ``results`` (None: the results named
    for those roles)."""
    results = results or Results()
    at_us = created_us
    if at_us is None:
        for key in ("created", "finished", "last_seen"):
            if record.get(key):
                at_us = parse_time(record[key])
                break
    slo, diagnosis = results.get(record, SLO), results.get(record, DIAGNOSIS)
    return (at_us or 0, str(slo.get("result") or ""), str(slo.get("class") or ""),
            str(diagnosis.get("reason") or ""), _number(slo.get("platform_s")),
            _number(slo.get("total_s")))


def row_of(data: dict[str, Any], results: Results | None = None) -> tuple[Any, ...]:
    """The row of a JSON record (:meth:`PodRecord.to_dict`), in :data:`COLUMNS` order
    (``results`` as :func:`query_columns`)."""
    created_us = _optional_time(data.get("created"))
    columns = query_columns(data, created_us, results)
    return (data["uid"], data["namespace"], data["name"], data["node"], created_us,
            _optional_time(data.get("finished")), data["outcome"], int(bool(data["partial"])),
            data["owner_kind"], data["owner_name"], data.get("duration_s"),
            orjson.dumps(data), *columns)


def _optional_time(text: str | None) -> int | None:
    return None if text is None else parse_time(text)
