"""The Elasticsearch documents after replays that repeat or cut the bundled sample, written
through the Elasticsearch sink (to the fake server), compared with the documents of one
clean pass and with the SQLite store of the same runs: the sink merges like the store."""

from __future__ import annotations

import gzip
import io
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from fake_es import FakeElasticsearch

import lunettes
from lunettes.cli.main import main
from lunettes.store.sqlite_schema import COLUMNS

SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"
CUT = 25_000


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    with gzip.open(SAMPLE) as f:
        return f.read().splitlines(keepends=True)


def replay(tmp: Path, es: FakeElasticsearch, *paths: Path) -> None:
    """One run per file (separate processes' worth of state), each writing the store
    ``tmp/store.db`` and the fake Elasticsearch."""
    config = tmp / "config"
    if not config.exists():
        with redirect_stdout(io.StringIO()):
            assert main(["init-config", str(config)]) == 0
        pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
        pipeline["sinks"] = {"sqlite": {"path": str(tmp / "store.db")},
                             "elasticsearch": {"hosts": [es.url], "max_retries": 1,
                                               "spool_dir": str(tmp / "spool")}}
        (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    for path in paths:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            assert main(["replay", "--format", "none", "--config", str(config),
                         str(path)]) == 0


def documents(es: FakeElasticsearch, family: str) -> dict[str, dict[str, Any]]:
    docs = es.docs(f"lunettes-{family}-")
    assert len(docs) == len({uid for _, uid in docs})  # one document per Pod
    return {uid: doc for (_, uid), doc in docs.items()}


def stored(tmp: Path) -> dict[str, dict[str, Any]]:
    db = sqlite3.connect(tmp / "store.db")
    try:
        at = COLUMNS.index("record")
        return {row[0]: orjson.loads(row[at]) for row in db.execute("SELECT * FROM pods")}
    finally:
        db.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> FakeElasticsearch:
    es = FakeElasticsearch().start()
    replay(tmp_path_factory.mktemp("clean"), es, SAMPLE)
    es.stop()
    return es


def run(tmp: Path, *paths: Path) -> FakeElasticsearch:
    tmp.mkdir(parents=True, exist_ok=True)
    es = FakeElasticsearch().start()
    try:
        replay(tmp, es, *paths)
    finally:
        es.stop()
    return es


def test_the_same_log_twice_gives_the_clean_documents(tmp_path: Path,
                                                      clean: FakeElasticsearch) -> None:
    es = run(tmp_path, SAMPLE, SAMPLE)
    assert documents(es, "pods") == documents(clean, "pods")
    assert documents(es, "diagnoses") == documents(clean, "diagnoses")
    assert len(documents(clean, "pods")) == 300


def test_a_late_block_replayed_alone_changes_nothing(tmp_path: Path, lines: list[bytes],
                                                      clean: FakeElasticsearch) -> None:
    block = tmp_path / "block.jsonl"
    block.write_bytes(b"".join(lines[12_000:16_000]))
    es = run(tmp_path, SAMPLE, block)
    assert documents(es, "pods") == documents(clean, "pods")
    assert documents(es, "diagnoses") == documents(clean, "diagnoses")


def test_rotated_halves_give_the_clean_documents_and_the_store_of_the_same_runs(
        tmp_path: Path, lines: list[bytes], clean: FakeElasticsearch) -> None:
    """Two halves in separate runs: in order, the clean pass's documents (the run of the
    second half carries on the Pods the first left in flight); in either order, the
    records the SQLite store holds for the same runs (tests/test_store_replays.py checks
    that store); each diagnosis document is its pod document's diagnosis."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"".join(lines[:CUT]))
    b.write_bytes(b"".join(lines[CUT:]))
    ab = run(tmp_path / "ab", a, b)
    ba = run(tmp_path / "ba", b, a)
    assert documents(ab, "pods") == documents(clean, "pods")
    assert documents(ab, "diagnoses") == documents(clean, "diagnoses")
    for es, runs in ((ab, "ab"), (ba, "ba")):
        pods = documents(es, "pods")
        assert pods == stored(tmp_path / runs), runs
        diagnoses = documents(es, "diagnoses")
        assert set(diagnoses) == {u for u, doc in pods.items() if doc["diagnosis"]["reason"]}
        for uid, doc in diagnoses.items():
            assert doc["reason"] == pods[uid]["diagnosis"]["reason"]
            assert doc["slo_result"] == pods[uid]["slo"]["result"]
