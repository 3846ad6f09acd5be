"""Faults of whole inputs: corrupt .gz files in a directory, an invalid first line, bad
lines under ``--follow``, deep nesting in fields lunettes never reads, and a fuzz run over
mutations of real audit lines."""

from __future__ import annotations

import gzip
import json
import threading
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from hostile import MAX_LINE_BYTES, kinds, sample_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from realdata import real

from lunettes.cli import exitcodes
from lunettes.cli.main import main
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource
from lunettes.sources.follow import FollowSource

LINES = sample_lines()


def _pipeline() -> Pipeline:
    data = {**load_config(DEFAULT_CONFIG_DIR), "sources": {}, "sinks": {}}
    return Pipeline.from_config(DEFAULT_CONFIG_DIR, data)


def _replay(*paths: Path) -> tuple[Any, BadRecords]:
    bad = BadRecords(samples_per_reason=100)
    stats = _pipeline().run(FileSource([str(p) for p in paths], bad,
                                       max_line_bytes=MAX_LINE_BYTES), bad=bad)
    return stats, bad


def _corrupt_directory(tmp_path: Path, damage: str) -> tuple[Path, int]:
    """A directory of two rotated logs: the older gzipped and damaged, the newer plain.
    Returns the directory and the number of records of the newer file."""
    half = len(LINES) // 2
    older = gzip.compress(b"".join(LINES[:half]))
    if damage == "truncated":
        older = older[: len(older) * 2 // 3]
    else:  # bytes overwritten in the middle of the deflate stream
        middle = len(older) // 2
        older = older[:middle] + b"\xff" * 64 + older[middle + 64:]
    folder = tmp_path / "audit"
    folder.mkdir()
    (folder / "audit-1.log.gz").write_bytes(older)
    (folder / "audit-2.log").write_bytes(b"".join(LINES[half:]))
    return folder, len(LINES) - half


def test_a_truncated_gz_in_a_directory_ends_that_file_only(tmp_path: Path) -> None:
    folder, newer = _corrupt_directory(tmp_path, "truncated")
    stats, bad = _replay(folder)
    assert bad.counts == {"corrupt_gzip": 1}, bad.report()
    (place,) = bad.samples["corrupt_gzip"]
    assert place.startswith(f"{folder / 'audit-1.log.gz'}:") and "EOFError" in place
    assert stats["records"] > newer  # the newer file whole, and the older up to the damage


def test_a_corrupt_gz_in_a_directory_ends_that_file_only(tmp_path: Path) -> None:
    folder, newer = _corrupt_directory(tmp_path, "overwritten")
    stats, bad = _replay(folder)
    # what was inflated before the damage was noticed may be garbage lines: each counted
    assert bad.counts["corrupt_gzip"] == 1, bad.report()
    assert set(bad.counts) <= {"corrupt_gzip", "invalid_json"}
    assert stats["records"] > newer
    assert main(["replay", str(folder), "--format", "none", "--no-store"]) == (
        exitcodes.DATA_LOST)


def test_an_invalid_first_line_is_one_bad_line_not_a_document(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b'{"kind": "Event", "apiVersion": \n' + b"".join(LINES[:300]))
    stats, bad = _replay(log)
    assert bad.counts == {"invalid_json": 1}
    assert bad.samples["invalid_json"][0].startswith(f"{log}:1: ")
    assert stats["records"] == 300


def test_a_pretty_printed_event_list_is_still_one_document(tmp_path: Path) -> None:
    events = [orjson.loads(line) for line in LINES[:50]]
    log = tmp_path / "batch.json"
    log.write_bytes(orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                                  "items": events}, option=orjson.OPT_INDENT_2))
    stats, bad = _replay(log)
    assert bad.total == 0 and stats["records"] == 50


def test_bad_lines_under_follow_are_counted_and_the_reader_goes_on(tmp_path: Path) -> None:
    base = LINES[:1000]
    corpus = [k for k in kinds(base) if k.reason != "line_too_long"]
    log = tmp_path / "audit.log"
    text = b"".join(base) + b"".join(k.line for k in corpus) + b"".join(LINES[1000:1005])
    log.write_bytes(text)
    stop = threading.Event()
    bad = BadRecords()
    source = FollowSource([str(log)], stop, bad=bad, on_caught_up=stop.set)
    records = list(source)
    last = len(text.splitlines())
    assert records[-1].origin == f"{log}:{last}"  # read past them all
    assert not [r for r in bad.counts if r.startswith("internal_error")]
    assert bad.total >= len([k for k in corpus if k.reason in (
        "invalid_json", "not_an_object", "too_deep", "bad_timestamp")])


def test_deep_nesting_where_nothing_reads_it_is_harmless(tmp_path: Path) -> None:
    """A valid record with a value nested 100,000 deep in a field nobody reads: kept, and
    nothing recurses into it (decode, fold, spec summary, the JSON-lines and SQLite sinks)."""
    lines = list(LINES[:1000])
    for index, line in enumerate(lines):
        if b'"subresource":"status"' in line:
            lines[index] = line.replace(b'"requestObject":{',
                                        b'"requestObject":{"deep":' + b"[" * 100_000
                                        + b"]" * 100_000 + b",", 1)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines))
    out, db = tmp_path / "pods.jsonl", tmp_path / "pods.db"
    data = {**load_config(DEFAULT_CONFIG_DIR), "sources": {},
            "sinks": {"jsonl": {"path": str(out)}, "sqlite": {"path": str(db)}}}
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data)
    bad = BadRecords()
    try:
        stats = pipeline.run(FileSource([str(log)], bad), bad=bad)
    finally:
        pipeline.shutdown()
    assert bad.total == 0 and stats["pods_final"] > 0
    assert out.read_bytes().count(b"\n") == stats["pods_final"]


# -- fuzz: mutations of real lines ------------------------------------------------------
@cache
def _real_lines() -> list[bytes]:
    """Lines of the sample and of three real captures (read when a test first asks: a
    missing capture skips that test, not the module's collection)."""
    lines = LINES[:400:7]
    for name in ("openshift-4.12-requestresponse.jsonl", "openshift-4.12-small.jsonl",
                 "audit2rbac-demo-metadata.jsonl"):
        lines += Path(real(name)).read_bytes().splitlines(keepends=True)[:60]
    return lines


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
    st.text(max_size=20), st.just([]), st.just({}), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(["2099-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:"
                     "59:59-01:00", "2026-01-01T00:00:00.1\u0663Z", "x", ""]))


def _paths(doc: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    """Every path into a decoded document (objects and arrays), up to 8 deep."""
    out = [prefix] if prefix else []
    if depth < 8 and isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key), depth + 1)
    elif depth < 8 and isinstance(doc, list):
        for index, value in enumerate(doc[:3]):
            out += _paths(value, (*prefix, index), depth + 1)
    return out


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from(_real_lines()))
    how = draw(st.sampled_from(["value", "value", "delete", "bytes", "cut"]))
    if how in ("value", "delete"):
        doc = orjson.loads(line)
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if how == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_VALUES)
        try:
            return orjson.dumps(doc) + b"\n"
        except TypeError:  # an integer past 64 bits: the standard library writes any size
            return json.dumps(doc).encode() + b"\n"
    if how == "cut":
        return line[: draw(st.integers(0, len(line)))] + b"\n"
    at = draw(st.integers(0, len(line) - 1))
    junk = draw(st.binary(min_size=1, max_size=4))
    return line[:at] + junk + line[at + draw(st.integers(0, 4)):]


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_mutated(), min_size=1, max_size=8))
def test_fuzz_mutated_real_lines_never_crash(tmp_path: Path, mutations: list[bytes]) -> None:
    log = tmp_path / "fuzz.log"
    real = _real_lines()
    log.write_bytes(b"".join(real[:40]) + b"".join(mutations) + b"".join(real[40:60]))
    stats, bad = _replay(log)
    assert not [r for r in bad.counts if r.startswith("internal_error")], bad.report()
    assert stats["records"] + bad.total >= 60
