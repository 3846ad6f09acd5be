"""The Elasticsearch source, against the local fake Elasticsearch 8 (tests/fake_es.py: no
real server): the bundled sample indexed as deploy/filebeat does and as Elastic's
Kubernetes integration does reads back into the pod records of a file replay; recent
documents wait for the lag; a checkpoint and a restart lose and repeat nothing; documents
that are no audit events are counted with their index/_id."""

from __future__ import annotations

import copy
import gzip
import itertools
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from api_server import SAMPLE, wait_for
from fake_es import FakeElasticsearch
from test_checkpoint import later

from lunettes.model.audit import TICK_STAGE, AuditRecord
from lunettes.model.record import PodRecord
from lunettes.model.times import parse_time
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline
from lunettes.sinks.elasticsearch import client
from lunettes.sources.elasticsearch import ElasticsearchSource

INTEGRATION = "logs-kubernetes.audit_logs-default"


@pytest.fixture
def fake() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch().start()
    yield server
    server.stop()


def events(lines: Sequence[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines]


def filebeat_doc(event: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """deploy/filebeat: the event under kubernetes.audit in kube-audit-YYYY.MM.DD, @timestamp
    from requestReceivedTimestamp, _id auditID-stage (ingest-pipeline.json)."""
    received = event["requestReceivedTimestamp"]
    index = "kube-audit-" + received[:10].replace("-", ".")
    return index, f"{event['auditID']}-{event['stage']}", {
        "@timestamp": received, "kubernetes": {"audit": event},
        "event": {"id": event["auditID"], "action": event["verb"], "kind": "event",
                  "dataset": "kubernetes.audit"}}


def integration_doc(event: dict[str, Any], n: int) -> tuple[str, str, dict[str, Any]]:
    """Elastic's integration: the event under kubernetes.audit in the audit_logs data
    stream, @timestamp the ingest time, ids chosen by Elasticsearch."""
    return INTEGRATION, f"auto-{n:07d}", {
        "@timestamp": "2030-01-01T00:00:00.000Z", "kubernetes": {"audit": event},
        "data_stream": {"type": "logs", "dataset": "kubernetes.audit_logs",
                        "namespace": "default"},
        "event": {"kind": "event", "action": event["verb"],
                  "dataset": "kubernetes.audit_logs"}}


def index(fake: FakeElasticsearch, docs: list[dict[str, Any]], layout: str,
          start: int = 0) -> None:
    for n, event in enumerate(docs, start):
        name, doc_id, source = (filebeat_doc(event) if layout == "filebeat"
                                else integration_doc(event, n))
        fake.documents[(name, doc_id)] = source


def config(tmp: Path, sources: dict[str, Any], checkpoint: Path | None = None) -> Path:
    data = yaml.safe_load((DEFAULT_CONFIG_DIR / "pipeline.yaml").read_text())
    data["sources"] = sources
    data["sinks"] = {}
    if checkpoint is not None:
        data["checkpoint"] = {"path": str(checkpoint), "interval_s": 0.05}
    folder = tmp / f"config-{len(list(tmp.glob('config-*')))}"
    shutil.copytree(DEFAULT_CONFIG_DIR, folder)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(data))
    return folder


def es_section(fake: FakeElasticsearch, pattern: str) -> dict[str, Any]:
    return {"elasticsearch": {"hosts": [fake.url], "index": pattern, "lag_s": 0,
                              "poll_s": 0.05, "page_size": 5000}}


def file_replay(tmp: Path, path: Path) -> dict[str, PodRecord]:
    found: dict[str, PodRecord] = {}
    pipeline = Pipeline.from_config(config(tmp, {"file": {"paths": [str(path)]}}))
    pipeline.run(on_record=lambda r: found.__setitem__(r.uid, r))
    pipeline.shutdown()
    return found


def live_run(folder: Path, total: int) -> tuple[list[PodRecord], Pipeline]:
    """Run a pipeline on ``folder``'s Elasticsearch source until it has read ``total``
    documents and caught up, then stop it; every pod record it wrote, in order."""
    written: list[PodRecord] = []
    pipeline = Pipeline.from_config(folder)
    source = pipeline.sources[0]
    assert isinstance(source, ElasticsearchSource)
    runner = threading.Thread(target=pipeline.run, kwargs={"on_record": written.append})
    runner.start()
    try:
        wait_for(lambda: source.stats["documents"] >= total and source.state == "following",
                 "the source to read every document", 300)
        if pipeline.checkpoints is not None:  # one more checkpoint, after catching up
            seen = pipeline.checkpoints.written
            wait_for(lambda: pipeline.checkpoints is not None
                     and pipeline.checkpoints.written > seen + 1, "a checkpoint", 60)
    finally:
        pipeline.stop()
        runner.join(300)
    assert not runner.is_alive()
    pipeline.shutdown()
    return written, pipeline


def comparable(record: PodRecord) -> Any:
    """A pod record as JSON. A Pod that timed out has its SLO figures measured to the
    first record that moved the audit clock past its deadline: which record that is
    depends on the order of records within a millisecond (Elasticsearch's date
    resolution) and on duplicates Filebeat stored once, so those figures are left out."""
    data = orjson.loads(orjson.dumps(record.to_dict()))
    if data.get("end_reason") == "timeout":
        data.pop("slo", None)
    return data


@pytest.mark.parametrize("layout", ["filebeat", "integration"])
def test_the_sample_indexed_by_filebeat_or_the_integration_reads_back_as_a_file_replay(
        tmp_path: Path, fake: FakeElasticsearch, layout: str) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines()
    expected = file_replay(tmp_path, SAMPLE)
    index(fake, events(lines), layout)
    pattern = "kube-audit-*" if layout == "filebeat" else "logs-kubernetes.audit_logs-*"
    written, _ = live_run(config(tmp_path, es_section(fake, pattern)), len(fake.documents))
    got = {record.uid: record for record in written}
    assert len(got) == len(written)  # no Pod written twice
    assert sorted(got) == sorted(expected)
    assert {uid: comparable(r) for uid, r in got.items()} == {
        uid: comparable(r) for uid, r in expected.items()}
    assert fake.pits_opened >= 1 and not fake.pits  # every PIT opened was closed
    searches = [r.json for r in fake.requests if r.path == "/_search"]
    assert all("pit" in body and "search_after" in body for body in searches[1:])


def source_of(fake: FakeElasticsearch, **options: Any) -> ElasticsearchSource:
    return ElasticsearchSource(client([fake.url]), index="kube-audit-*", poll_s=0.01,
                               **options)


def one_poll(source: ElasticsearchSource) -> list[AuditRecord]:
    """The records of the source's first poll (up to its first idle heartbeat)."""
    out = []
    for record in source:
        if record.stage is TICK_STAGE:
            break
        out.append(record)
    source.close()
    return out


def test_documents_younger_than_the_lag_wait_for_a_later_poll(
        fake: FakeElasticsearch) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines()[:2000]
    docs = events(lines)
    index(fake, docs, "filebeat")  # events shipped twice are stored once (by _id)
    docs = list({(e["auditID"], e["stage"]): e for e in docs}.values())
    times = sorted(parse_time(e["requestReceivedTimestamp"]) for e in docs)
    newest_s = times[-1] / 1e6
    lag_s = 30.0
    cut_us = int((newest_s - 10 - lag_s) * 1e6)  # now is 10 s after the newest event
    old = sum(1 for t in times if t < cut_us // 1000 * 1000)
    assert 0 < old < len(docs)
    early = one_poll(source_of(fake, lag_s=lag_s, clock=lambda: newest_s - 10))
    assert len(early) == old
    assert all(r.received_us < cut_us for r in early)
    everything = one_poll(source_of(fake, lag_s=lag_s, clock=lambda: newest_s + lag_s + 1))
    assert len(everything) == len(docs)
    millis = [r.received_us // 1000 for r in everything]
    assert millis == sorted(millis)  # audit-time order, to the date type's millisecond


def test_documents_that_are_no_audit_events_are_counted_with_index_and_id(
        fake: FakeElasticsearch) -> None:
    docs = events(gzip.decompress(SAMPLE.read_bytes()).splitlines()[:50])
    index(fake, docs, "filebeat")
    name = filebeat_doc(docs[0])[0]
    bad_event = copy.deepcopy(docs[1])
    bad_event["auditID"] = "broken"
    bad_event["verb"] = 7
    fake.documents[(name, "broken-ResponseComplete")] = filebeat_doc(bad_event)[2]
    fake.documents[(name, "no-event")] = {  # a time, but no Event under it
        "@timestamp": docs[2]["requestReceivedTimestamp"], "message": "not json",
        "kubernetes": {"audit": {
            "requestReceivedTimestamp": docs[2]["requestReceivedTimestamp"]}}}
    source = source_of(fake, lag_s=0)
    records = one_poll(source)
    assert len(records) == len({(e["auditID"], e["stage"]) for e in docs})
    assert source.bad.total == 2
    assert source.bad.counts["unknown_kind"] == source.bad.counts["wrong_type:verb"] == 1
    places = "\n".join(p for ps in source.bad.samples.values() for p in ps)
    assert f"{name}/no-event" in places and f"{name}/broken-ResponseComplete" in places



def test_documents_without_the_time_field_are_counted_not_silently_unseen(
        fake: FakeElasticsearch) -> None:
    docs = events(gzip.decompress(SAMPLE.read_bytes()).splitlines()[:50])
    index(fake, docs, "filebeat")
    name = filebeat_doc(docs[0])[0]

    def untimed(n: int) -> None:  # an Event whose requestReceivedTimestamp was dropped
        event = {k: v for k, v in docs[n].items() if k != "requestReceivedTimestamp"}
        fake.documents[(name, f"untimed-{n}")] = {"kubernetes": {"audit": event}}

    for n in range(3):
        untimed(n)
    source = source_of(fake, lag_s=0)
    stream = iter(source)

    def poll() -> list[AuditRecord]:  # the records up to the poll's idle heartbeat
        return list(itertools.takewhile(lambda r: r.stage is not TICK_STAGE, stream))

    assert len(poll()) == len({(e["auditID"], e["stage"]) for e in docs})
    assert source.bad.counts["missing_time_field"] == 3
    assert source.bad.samples["missing_time_field"][0].startswith("kube-audit-*: 3 ")
    untimed(3)
    assert poll() == []
    source.close()
    assert source.bad.counts["missing_time_field"] == 4  # the three are not counted again
    assert source.bad.total == 4

def test_a_restart_from_the_checkpoint_loses_and_repeats_no_pod(
        tmp_path: Path, fake: FakeElasticsearch) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines()
    lines.append(later(lines[-1], 3600, "after-everything").rstrip(b"\n"))
    whole = tmp_path / "whole.log"
    whole.write_bytes(b"\n".join(lines) + b"\n")
    expected = file_replay(tmp_path, whole)
    docs = events(lines)
    half = len(docs) // 2
    index(fake, docs[:half], "filebeat")
    stored = len(fake.documents)
    checkpoint = tmp_path / "checkpoint.json"
    folder = config(tmp_path, es_section(fake, "kube-audit-*"), checkpoint)
    first, _ = live_run(folder, stored)
    assert checkpoint.exists()
    in_flight = set(expected) - {r.uid for r in first}
    assert first and in_flight  # the stop came mid-stream
    index(fake, docs[half:], "filebeat", half)
    saved = orjson.loads(checkpoint.read_bytes())["positions"]
    assert [list(p) for p in saved.values()] == [["search_after"]]
    second, pipeline = live_run(folder, len(fake.documents) - stored)
    assert isinstance(pipeline.sources[0], ElasticsearchSource)
    uids = [r.uid for r in first + second]
    assert len(uids) == len(set(uids))  # none written twice
    assert set(uids) == set(expected)  # none lost
    got = {r.uid: r for r in first + second}
    assert {u: comparable(r) for u, r in got.items()} == {
        u: comparable(r) for u, r in expected.items()}
