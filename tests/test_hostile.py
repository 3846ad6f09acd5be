"""A bad line never changes a good record and is always counted where it was
(tests/hostile.py: the corpus of bad input, one reason per kind)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hostile import MAX_LINE_BYTES, Kind, kinds, sample_lines

from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource

BASE = sample_lines()[:1000]
"""The beginning of the bundled sample: the base each kind is tried in alone."""
KINDS = kinds(BASE)


def _insert(lines: list[bytes], chosen: list[Kind]) -> tuple[bytes, dict[int, Kind]]:
    """The log with each kind's line after its template; the line number of each kind."""
    after: dict[int, list[Kind]] = {}
    for kind in chosen:
        after.setdefault(kind.after, []).append(kind)
    out: list[bytes] = []
    where: dict[int, Kind] = {}
    for number, line in enumerate(lines, 1):
        out.append(line)
        for kind in after.get(number, ()):
            out.append(kind.line)
            where[len(out)] = kind
    return b"".join(out), where


def replay(log: bytes, tmp: Path) -> tuple[bytes, list[Any], BadRecords]:
    """(JSON lines, every row of the store, bad records) of one replay of ``log``."""
    tmp.mkdir(parents=True, exist_ok=True)
    path, out, db = tmp / "audit.log", tmp / "pods.jsonl", tmp / "pods.db"
    path.write_bytes(log)
    data = {**load_config(DEFAULT_CONFIG_DIR), "sources": {},
            "sinks": {"jsonl": {"path": str(out)}, "sqlite": {"path": str(db)}}}
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data)
    bad = BadRecords(samples_per_reason=10_000)
    try:
        pipeline.run(FileSource([str(path)], bad, max_line_bytes=MAX_LINE_BYTES), bad=bad)
    finally:
        pipeline.shutdown()
    store = sqlite3.connect(db)
    try:
        tables = [name for (name,) in store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'carried_state' "
            "ORDER BY name")]  # the records, not the state carried to a next run
        rows = [(table, sorted(store.execute(f'SELECT * FROM "{table}"').fetchall()))
                for table in tables]
    finally:
        store.close()
    return out.read_bytes(), rows, bad


def _places(bad: BadRecords, reason: str) -> list[str]:
    return [place.split(": ", 1)[0] for place in bad.samples.get(reason, [])]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[Any]]:
    jsonl, rows, bad = replay(b"".join(BASE), tmp_path_factory.mktemp("clean"))
    assert bad.total == 0 and jsonl.count(b"\n") > 5
    return jsonl, rows


def test_the_corpus_has_over_a_hundred_distinct_kinds() -> None:
    assert len({k.name for k in KINDS}) == len(KINDS) >= 100
    assert len({k.line for k in KINDS}) == len(KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_a_bad_line_changes_nothing_and_is_counted_where_it_was(
        kind: Kind, clean: tuple[bytes, list[Any]], tmp_path: Path) -> None:
    log, where = _insert(BASE, [kind])
    jsonl, rows, bad = replay(log, tmp_path)
    (number,) = where
    assert dict(bad.counts) == {kind.reason: 1}, bad.report()
    assert _places(bad, kind.reason) == [f"{tmp_path / 'audit.log'}:{number}"]
    assert jsonl == clean[0]
    assert rows == clean[1]


def test_every_kind_at_once_in_the_whole_sample(tmp_path: Path) -> None:
    lines = sample_lines()
    everything = kinds(lines)
    log, where = _insert(lines, everything)
    jsonl, rows, bad = replay(log, tmp_path / "hostile")
    clean_jsonl, clean_rows, clean_bad = replay(b"".join(lines), tmp_path / "clean")
    assert clean_bad.total == 0
    assert jsonl == clean_jsonl and rows == clean_rows
    assert bad.total == len(everything)
    path = tmp_path / "hostile" / "audit.log"
    for number, kind in where.items():
        assert f"{path}:{number}" in _places(bad, kind.reason), kind.name
