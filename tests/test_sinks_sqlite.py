"""The SQLite store written by several processes at once (``lunettes replay --workers N``)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from lunettes.model.record import PodRecord
from lunettes.sinks.sqlite import SQLiteSink
from lunettes.store.sqlite_schema import SCHEMA_VERSION

WRITERS = 6
V1_SCHEMA = """
CREATE TABLE pods (uid TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,
    node TEXT NOT NULL, created_us INTEGER, finished_us INTEGER, outcome TEXT NOT NULL,
    partial INTEGER NOT NULL, owner_kind TEXT NOT NULL, owner_name TEXT NOT NULL,
    duration_s REAL, record BLOB NOT NULL);
"""


def _write(path: str, writer: int, barrier: Barrier, out: Connection) -> None:
    """Open the store when every writer is ready, write 20 Pods, report any error."""
    try:
        sink = SQLiteSink(path)  # opens nothing yet: the first export creates the store
        barrier.wait()
        sink.export([PodRecord(uid=f"{writer}-{i}", namespace="ns", name=f"p{writer}-{i}",
                               node="n", created_us=1, finished_us=2, outcome="delivered")
                     for i in range(20)])
        sink.shutdown()
        out.send("")
    except Exception as exc:  # sent to the test, which shows it
        out.send(repr(exc))


@pytest.mark.parametrize(("store", "rounds"), [("new", 30), ("version-1", 3)])
def test_writers_opening_one_store_at_once(tmp_path: Path, store: str, rounds: int) -> None:
    # One round in six failed with "database is locked" (new store) and every round with
    # "duplicate column name" (upgrade) before the store serialised its creation.
    context = multiprocessing.get_context("fork")
    for round_ in range(rounds):
        path = tmp_path / f"{round_}.db"
        if store == "version-1":
            db = sqlite3.connect(path)
            db.executescript(V1_SCHEMA)
            db.execute("PRAGMA journal_mode=WAL")
            db.close()
        barrier = context.Barrier(WRITERS)
        pipes = [context.Pipe(duplex=False) for _ in range(WRITERS)]
        procs = [context.Process(target=_write, args=(str(path), k, barrier, pipes[k][1]))
                 for k in range(WRITERS)]
        for proc in procs:
            proc.start()
        errors = [reader.recv() for reader, _ in pipes]
        for proc in procs:
            proc.join()
        assert not any(errors), (round_, errors)
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(*) FROM pods").fetchone()[0] == WRITERS * 20
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()


S = 1_000_000


def _half(writer: int, uid: str) -> PodRecord:
    """Writer 0 saw a Pod's creation and stopped reading (in flight); writer 1 saw only its
    delivery (partial). Times by hand: created at 10 s, Ready at 50 s."""
    if writer == 0:
        return PodRecord(uid=uid, namespace="ns", name=uid, node="", created_us=10 * S,
                         finished_us=None, outcome="in_progress", last_seen_us=20 * S,
                         end_reason="end_of_input", owner_kind="ReplicaSet",
                         owner_name="web")
    return PodRecord(uid=uid, namespace="ns", name=uid, node="worker-1", created_us=None,
                     finished_us=50 * S, outcome="delivered", last_seen_us=50 * S,
                     end_reason="delivered")


def _write_halves(path: str, writer: int, barrier: Barrier, out: Connection) -> None:
    """Write one half of the same 200 Pods, in batches of 10, when every writer is ready."""
    try:
        sink = SQLiteSink(path)
        barrier.wait()
        for start in range(0, 200, 10):
            sink.export([_half(writer, f"pod-{i}") for i in range(start, start + 10)])
        sink.shutdown()
        out.send("")
    except Exception as exc:  # sent to the test, which shows it
        out.send(repr(exc))


def test_writers_of_the_same_pods_at_once_merge_and_lose_nothing(tmp_path: Path) -> None:
    """Two processes write the two halves of the same Pods at the same time: every Pod ends
    with the creation of one and the delivery of the other, whichever wrote last (the read
    and the write of a merge are one transaction)."""
    context = multiprocessing.get_context("fork")
    for round_ in range(5):
        path = tmp_path / f"{round_}.db"
        barrier = context.Barrier(2)
        pipes = [context.Pipe(duplex=False) for _ in range(2)]
        procs = [context.Process(target=_write_halves,
                                 args=(str(path), k, barrier, pipes[k][1])) for k in range(2)]
        for proc in procs:
            proc.start()
        errors = [reader.recv() for reader, _ in pipes]
        for proc in procs:
            proc.join()
        assert not any(errors), (round_, errors)
        db = sqlite3.connect(path)
        rows = db.execute("SELECT created_us, finished_us, outcome, node, owner_name, "
                          "duration_s FROM pods").fetchall()
        db.close()
        assert len(rows) == 200
        assert set(rows) == {(10 * S, 50 * S, "delivered", "worker-1", "web", 40.0)}
