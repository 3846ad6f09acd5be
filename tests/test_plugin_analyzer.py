"""A new analyzer, added by an entry point of its own distribution and a few lines of
pipeline.yaml, reaches the store, the API, the Elasticsearch documents and the replay table
with no change to lunettes: the sinks, the API and the table read the analyzers' declared
roles and results, not their names. The shipped SLO and diagnosis analyzers, renamed in
the same pipeline.yaml, still fill the store's columns, the diagnoses index, the API's
filters, summary and trace attributes: they are found by the roles they play."""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from api_server import SAMPLE, close, serve
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
def toy_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An installed distribution ``lunettes-toy`` (a module and its .dist-info with an
    entry point in ``lunettes.analyzers``) on sys.path, as pip would leave it; returns the
    environment of a subprocess that sees it too."""
    site = tmp_path / "site"
    (site / "lunettes_toy-1.0.dist-info").mkdir(parents=True)
    (site / "lunettes_toy.py").write_text(TOY_MODULE)
    (site / "lunettes_toy-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lunettes-toy\nVersion: 1.0\n")
    (site / "lunettes_toy-1.0.dist-info" / "entry_points.txt").write_text(
        "[lunettes.analyzers]\nqueue_wait = lunettes_toy:QueueWait\n")
    monkeypatch.syspath_prepend(str(site))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}


@pytest.fixture
def es() -> Iterator[FakeElasticsearch]:
    fake = FakeElasticsearch().start()
    try:
        yield fake
    finally:
        fake.stop()


def test_a_plugin_analyzer_is_stored_indexed_served_and_shown(
        toy_distribution: dict[str, str], es: FakeElasticsearch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    assert main(["init-config", str(config)]) == 0
    pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
    analyzers = pipeline["analyzers"]
    analyzers["queue_wait"] = {"needs": ["stages"], "limit_s": 1}  # YAML only
    # The SLO and diagnosis analyzers under other names.
    analyzers["why"] = {"type": "diagnosis", **analyzers.pop("diagnosis")}
    analyzers["delivery"] = {"type": "slo", **analyzers.pop("slo")}
    analyzers["delivery"]["needs"] = ["stages", "lifecycle", "why"]
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
    assert mapping["delivery"]["properties"]["result"]["type"] == "keyword"
    assert mapping["why"]["properties"]["evidence"]["type"] == "nested"
    by_uid = {r["uid"]: r for r in stored}
    diagnosed = {doc["uid"]: doc for doc in es.docs("lunettes-diagnoses-").values()}
    assert set(diagnosed) == {u for u, r in by_uid.items() if r["why"]["reason"]}
    for uid, doc in diagnosed.items():
        assert (doc["reason"], doc["slo_result"]) == (by_uid[uid]["why"]["reason"],
                                                     by_uid[uid]["delivery"]["result"])

    # The store's query columns come from the results playing the SLO and diagnosis roles.
    with sqlite3.connect(tmp_path / "lunettes.db") as db:
        columns = {uid: (result, cls, reason) for uid, result, cls, reason in db.execute(
            "SELECT uid, slo_result, slo_class, reason FROM pods")}
    assert columns == {u: (r["delivery"]["result"], r["delivery"]["class"] or "",
                           r["why"]["reason"] or "") for u, r in by_uid.items()}
    violated = sorted(u for u, r in by_uid.items() if r["delivery"]["result"] == "violated")
    assert violated

    # The API, over the SQLite store and over Elasticsearch: the toy's result with the
    # Pod, on a route of its own and in the OpenAPI schema; the renamed analyzers' results
    # in the filters, the summary and the trace.
    uid = next(u for u, v in verdicts.items() if v == "queued")
    config_args = ["--config", str(config)]
    answers = {}
    for store in (["--store", str(tmp_path / "lunettes.db")],
                  ["--api-store", "elasticsearch", "--es-url", es.url]):
        with serve([*store, *config_args], tmp_path, env=toy_distribution) as base, \
                httpx.Client(base_url=f"{base}/api/v1", timeout=30) as api:
            results = api.get("/info").json()["results"]
            assert {"name": "delivery", "roles": ["slo"], "headline": "result"} in results
            assert {"name": "queue_wait", "roles": ["queue_wait"],
                    "headline": "verdict"} in results
            pod = api.get(f"/pods/{uid}").json()
            assert pod["queue_wait"] == by_uid[uid]["queue_wait"]
            assert pod["delivery"] == by_uid[uid]["delivery"]
            assert api.get(f"/pods/{uid}/queue_wait").json() == {
                "uid": uid, "queue_wait": by_uid[uid]["queue_wait"]}
            page = api.get("/pods", params={"slo_result": "violated", "limit": 500}).json()
            assert sorted(item["uid"] for item in page["items"]) == violated
            root = api.get(f"/pods/{uid}/trace").json()["spans"][0]["attributes"]
            assert root["lunettes.queue_wait.verdict"] == "queued"
            assert root["lunettes.slo.result"] == by_uid[uid]["delivery"]["result"]
            schema = httpx.get(f"{base}/openapi.json", timeout=30).json()
            answers[store[0]] = api.get("/slo/summary").json()
        toy = schema["components"]["schemas"]["QueueWaitResult"]["properties"]
        assert set(toy) == {"verdict", "wait_s"}
    results = Counter(r["delivery"]["result"] for r in stored)
    for summary in answers.values():
        assert summary["overall"]["count"] == len(stored)
        assert {k: v for k, v in summary["overall"]["results"].items() if v} == results
    assert close(answers["--store"], answers["--api-store"])
