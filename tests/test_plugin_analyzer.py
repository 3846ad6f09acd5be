"""A new analyzer, added by an entry point of its own distribution and a few lines of
pipeline.yaml, reaches the store, the API, the Elasticsearch documents and the replay table
with no change to lunettes: the sinks, the API and the table read the analyzers' declared
roles and results, not their names."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from api_server import SAMPLE, serve
from fake_es import FakeElasticsearch

from lunettes.cli.main import main

TOY_MODULE = '''
"""A toy analyzer: how long a Pod waited for the scheduler."""

from lunettes.analyzers.base import STAGES


class QueueWait:
    provides = ("queue_wait",)
    requires = (STAGES,)
    accepts = ()
    headline = "verdict"
    fields = {"verdict": "keyword", "wait_s": "float"}

    def __init__(self, name, limit_s):
        self.name, self.limit_s = name, limit_s

    @classmethod
    def from_config(cls, name, section, context):
        limit_s = section.get("limit_s", 1.0, float)
        section.check_unknown()
        return cls(name, limit_s)

    def analyze(self, timeline, inputs):
        stage = next((s for s in inputs.role(STAGES) or () if s.name == "scheduling"), None)
        if stage is None or stage.duration_s is None:
            return {"verdict": "unscheduled", "wait_s": None}
        verdict = "queued" if stage.duration_s > self.limit_s else "prompt"
        return {"verdict": verdict, "wait_s": stage.duration_s}
'''


@pytest.fixture
def toy_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution ``lunettes-toy`` (a module and its .dist-info with an
    entry point in ``lunettes.analyzers``) on sys.path, as pip would leave it."""
    site = tmp_path / "site"
    (site / "lunettes_toy-1.0.dist-info").mkdir(parents=True)
    (site / "lunettes_toy.py").write_text(TOY_MODULE)
    (site / "lunettes_toy-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lunettes-toy\nVersion: 1.0\n")
    (site / "lunettes_toy-1.0.dist-info" / "entry_points.txt").write_text(
        "[lunettes.analyzers]\nqueue_wait = lunettes_toy:QueueWait\n")
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def es() -> Iterator[FakeElasticsearch]:
    fake = FakeElasticsearch().start()
    try:
        yield fake
    finally:
        fake.stop()


def test_a_plugin_analyzer_is_stored_indexed_served_and_shown(
        toy_distribution: None, es: FakeElasticsearch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    assert main(["init-config", str(config)]) == 0
    pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
    pipeline["analyzers"]["queue_wait"] = {"needs": ["stages"], "limit_s": 1}  # YAML only
    pipeline["sinks"] = {
        "sqlite": {"path": str(tmp_path / "lunettes.db")},
        "elasticsearch": {"hosts": [es.url], "spool_dir": str(tmp_path / "spool"),
                          "max_retries": 1},
    }
    (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    capsys.readouterr()

    assert main(["replay", str(SAMPLE), "--config", str(config)]) == 0
    table = capsys.readouterr().out

    # The store: every record holds the toy's result, consistent with its own stages.
    with sqlite3.connect(tmp_path / "lunettes.db") as db:
        stored = [orjson.loads(row[0]) for row in db.execute("SELECT record FROM pods")]
    assert len(stored) == 300
    verdicts = {}
    for record in stored:
        toy = record["queue_wait"]
        scheduling = next((s for s in record["stages"] if s["name"] == "scheduling"), None)
        wait = scheduling["duration_s"] if scheduling else None
        assert toy == {"verdict": "unscheduled" if wait is None else
                       "queued" if wait > 1 else "prompt", "wait_s": wait}
        verdicts[record["uid"]] = toy["verdict"]
    assert {"queued", "prompt", "unscheduled"} <= set(verdicts.values())

    # The table: a column of its own, headed by the analyzer's name.
    header = next(line for line in table.splitlines() if "namespace/name" in line)
    assert "queue_wait" in header.split()
    for word in ("queued", "prompt", "unscheduled"):
        assert word in table

    # Elasticsearch: in every pod document, and mapped by the fields it declares.
    docs = es.docs("lunettes-pods-")
    assert {doc["uid"]: doc["queue_wait"]["verdict"] for doc in docs.values()} == verdicts
    mapping = es.templates["lunettes-pods"]["template"]["mappings"]["properties"]
    assert mapping["queue_wait"] == {"properties": {
        "verdict": {"type": "keyword", "ignore_above": 1024}, "wait_s": {"type": "float"}}}
    assert "slo" in mapping and "diagnosis" in mapping  # the others are still mapped

    # The API: served with the Pod, as stored.
    uid = next(u for u, v in verdicts.items() if v == "queued")
    with serve(["--store", str(tmp_path / "lunettes.db")], tmp_path) as base:
        pod = httpx.get(f"{base}/api/v1/pods/{uid}", timeout=30).json()
    assert pod["queue_wait"]["verdict"] == "queued"
