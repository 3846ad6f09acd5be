"""ElasticsearchSink with the official client against a local fake Elasticsearch 8.

No Elasticsearch server runs here: ``fake_es`` answers like one and records what the
client sends. Backoff delays are a millisecond; nothing waits on a clock.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("elasticsearch", reason="needs the elasticsearch extra")

from fake_es import FakeElasticsearch
from waiting import wait_until

from lunettes.config.errors import ConfigError, Section
from lunettes.model.record import PodRecord, Stage
from lunettes.pipeline import build_sinks
from lunettes.registry import SINKS, BuildContext, load
from lunettes.sinks.base import Sink, SinkClosedError
from lunettes.sinks.elasticsearch import ElasticsearchSink
from lunettes.sinks.spool import DiskSpool
from lunettes.store import es_indices as tpl

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, in microseconds
PODS = "lunettes-pods-2023.11"
DIAGS = "lunettes-diagnoses-2023.11"
DEC_1_2023_MS = 1_701_388_800_000


def uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def diagnosis(reason: str = "ImagePullBackOff") -> dict[str, Any]:
    """Shaped like DiagnosisAnalyzer's result (lunettes/analyzers/diagnosis.py)."""
    return {
        "reason": reason,
        "stage": "image_pull",
        "owner": "user",
        "message": "image nginx:1.99 not found",
        "hint": "check the image name and tag",
        "so_far": False,
        "last_stage": "image_pull",
        "evidence": [
            {"time": "2023-11-14T22:13:21.123456Z", "source": "event", "audit_id": "a-1",
             "op": "create", "reason": "Failed", "container": "web",
             "message": "Failed to pull image \"nginx:1.99\""},
        ],
        "secondary": [{"code": "BackOff", "stage": "image_pull", "owner": "user",
                       "message": "Back-off pulling image", "count": 3,
                       "first": "2023-11-14T22:13:22.000000Z",
                       "last": "2023-11-14T22:13:40.000000Z"}],
    }


def record(n: int = 1, *, diag: dict[str, Any] | None = None, **overrides: Any) -> PodRecord:
    fields: dict[str, Any] = dict(
        uid=uid(n), namespace="shop", name=f"web-{n}", node="node-1",
        created_us=T0 + n, finished_us=T0 + n + 5_000_000, outcome="delivered",
        owner_kind="ReplicaSet", owner_name="web", last_seen_us=T0 + n + 6_000_000,
        stages=[Stage("delivery", "platform", T0 + n, T0 + n + 5_000_000),
                Stage("scheduling", "platform", T0 + n, T0 + n + 1_000_000,
                      parent="delivery")],
        results={"slo": {"result": "met", "class": "default"}},
    )
    fields.update(overrides)
    rec = PodRecord(**fields)
    if diag is not None:
        rec.results["diagnosis"] = diag
    return rec


@pytest.fixture
def es() -> Iterator[FakeElasticsearch]:
    fake = FakeElasticsearch().start()
    try:
        yield fake
    finally:
        fake.stop()


def make_sink(es: FakeElasticsearch, tmp_path: Path, **kwargs: Any) -> ElasticsearchSink:
    kwargs.setdefault("spool_dir", tmp_path / "spool")
    kwargs.setdefault("backoff_base_s", 0.001)
    kwargs.setdefault("backoff_max_s", 0.002)
    kwargs.setdefault("max_retries", 3)
    kwargs.setdefault("timeout_s", 5.0)
    return ElasticsearchSink([es.url], **kwargs)


def from_config(data: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None,
                name: str = "elasticsearch") -> tuple[ElasticsearchSink, list[str]]:
    problems: list[str] = []
    section = Section(data, f"sinks.{name}", problems)
    context = BuildContext(config_dir=tmp_path, env=env or {})
    return ElasticsearchSink.from_config(name, section, context), problems


# -- what is written ---------------------------------------------------------------------


def test_bulk_body_has_index_actions_keyed_by_uid_and_the_documents(es, tmp_path):
    records = [record(1, diag=diagnosis()), record(2), record(3, diag={"reason": ""})]
    with make_sink(es, tmp_path) as sink:
        assert isinstance(sink, Sink)
        sink.export(records)

    (bulk,) = es.bulk_requests()
    assert bulk.method in ("POST", "PUT")
    assert "compatible-with=8" in bulk.headers["content-type"]
    assert "x-ndjson" in bulk.headers["content-type"]
    lines = bulk.ndjson
    actions, docs = lines[0::2], lines[1::2]
    assert actions == [  # new documents: created only if absent
        {"create": {"_index": PODS, "_id": uid(1)}},
        {"index": {"_index": DIAGS, "_id": uid(1)}},
        {"create": {"_index": PODS, "_id": uid(2)}},
        {"create": {"_index": PODS, "_id": uid(3)}},
    ]
    # Pod documents are the pod records as every sink sees them (times with microseconds).
    assert docs[0] == records[0].to_dict()
    assert docs[0]["created"] == "2023-11-14T22:13:20.000001Z"
    assert docs[2] == records[1].to_dict()
    # The diagnosis document: the diagnosis at the top plus identity and SLO result.
    assert docs[1] == {
        **diagnosis(), "uid": uid(1), "namespace": "shop", "name": "web-1", "node": "node-1",
        "created": "2023-11-14T22:13:20.000001Z", "finished": "2023-11-14T22:13:25.000001Z",
        "outcome": "delivered", "owner_kind": "ReplicaSet", "owner_name": "web",
        "slo_result": "met", "slo_class": "default",
    }
    assert sink.stats["indexed"] == 4 and sink.stats["failed"] == 0
    assert es.docs(DIAGS).keys() == {(DIAGS, uid(1))}
    assert len(es.docs(PODS)) == 3


def test_templates_and_policy_are_installed_before_the_first_write_and_only_once(es, tmp_path):
    with make_sink(es, tmp_path, retention_days=45) as sink:
        assert es.requests == []  # building the sink opened nothing
        sink.export([record(1, diag=diagnosis())])
        sink.export([record(2)])

    paths = es.paths()
    assert paths[:3] == ["PUT /_ilm/policy/lunettes-retention",
                         "PUT /_index_template/lunettes-pods",
                         "PUT /_index_template/lunettes-diagnoses"]
    assert sorted(paths[3:5]) == [f"PUT /{DIAGS}", f"PUT /{PODS}"]
    # Each bulk request reads the stored documents first; the second installs nothing.
    assert paths[5:] == ["POST /_mget", "PUT /_bulk"] * 2

    policy = es.policies["lunettes-retention"]["policy"]
    assert policy["phases"]["delete"] == {"min_age": "45d", "actions": {"delete": {}}}

    pods = es.templates["lunettes-pods"]
    assert pods["index_patterns"] == ["lunettes-pods-*"]
    assert pods["template"]["settings"]["index"]["lifecycle"]["name"] == "lunettes-retention"
    mappings = pods["template"]["mappings"]
    assert mappings["dynamic"] is False
    props = mappings["properties"]
    for key in ("uid", "namespace", "name", "node", "outcome", "owner_kind", "owner_name"):
        assert props[key]["type"] == "keyword", key
    for key in ("created", "finished", "last_seen"):
        assert props[key] == {"type": "date", "format": "strict_date_optional_time"}
    assert props["duration_s"] == {"type": "float"}
    assert props["stages"]["type"] == "nested"
    assert props["stages"]["properties"]["start"]["type"] == "date"
    assert props["stages"]["properties"]["duration_s"]["type"] == "float"
    assert props["diagnosis"]["properties"]["evidence"]["type"] == "nested"

    diags = es.templates["lunettes-diagnoses"]
    assert diags["index_patterns"] == ["lunettes-diagnoses-*"]
    dprops = diags["template"]["mappings"]["properties"]
    assert diags["template"]["mappings"]["dynamic"] is False
    assert dprops["reason"]["type"] == "keyword" and dprops["stage"]["type"] == "keyword"
    assert dprops["slo_result"]["type"] == "keyword"
    assert dprops["message"] == {"type": "text", "fields": {
        "keyword": {"type": "keyword", "ignore_above": 1024}}}
    assert dprops["evidence"]["type"] == "nested"
    assert dprops["evidence"]["properties"]["time"]["type"] == "date"
    assert dprops["evidence"]["properties"]["audit_id"]["type"] == "keyword"

    # Each monthly index is created explicitly, under its template, with the ILM age
    # counted from the end of its month.
    for index, template in ((PODS, "lunettes-pods"), (DIAGS, "lunettes-diagnoses")):
        created = es.indices[index]
        assert created["explicit"] and created["template"] == template
        assert created["settings"] == {
            "index": {"lifecycle": {"origination_date": DEC_1_2023_MS}}}


def test_a_new_sink_reinstalls_templates_and_tolerates_existing_indices(es, tmp_path):
    with make_sink(es, tmp_path) as sink:
        sink.export([record(1)])
    with make_sink(es, tmp_path) as sink:
        sink.export([record(2)])
    assert sink.stats["indexed"] == 1 and sink.stats["failed"] == 0
    assert es.paths().count("PUT /_index_template/lunettes-pods") == 2
    assert len(es.docs(PODS)) == 2


def test_a_replay_overwrites_documents_never_duplicates(es, tmp_path):
    records = [record(n, diag=diagnosis()) for n in range(1, 6)]
    with make_sink(es, tmp_path) as sink:
        sink.export(records)
        assert sink.force_flush() is True
        assert len(es.documents) == 10
        first_writes = dict(es.seq_nos)
        sink.export(records)
    assert len(es.documents) == 10
    first, second = es.bulk_requests()
    targets = [[(meta["_index"], meta["_id"]) for a in r.ndjson[0::2] for meta in a.values()]
               for r in (first, second)]
    assert targets[0] == targets[1]  # same indices, same ids
    # The second time each pod document is written over the version it read, merged.
    assert [next(iter(a)) for a in second.ndjson[0::2]] == ["index", "index"] * 5
    assert [a["index"]["if_seq_no"] for a in second.ndjson[0::4]] == [
        first_writes[(PODS, uid(n))] for n in range(1, 6)]
    assert sink.stats["indexed"] == 20


def test_the_month_is_the_created_one_else_last_seen(es, tmp_path):
    jan = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
    records = [
        record(1, created_us=jan - 1, finished_us=jan + 10, last_seen_us=jan + 20),
        record(2, created_us=None, finished_us=None, last_seen_us=jan + 5),
    ]
    with make_sink(es, tmp_path, index_prefix="k8s") as sink:
        sink.export(records)
    assert set(es.documents) == {("k8s-pods-2023.12", uid(1)), ("k8s-pods-2024.01", uid(2))}
    assert es.indices["k8s-pods-2024.01"]["settings"]["index"]["lifecycle"] == {
        "origination_date": 1_706_745_600_000}  # 2024-02-01


def test_bulk_size_splits_requests(es, tmp_path):
    with make_sink(es, tmp_path, bulk_size=2) as sink:
        sink.export([record(n) for n in range(5)])
    assert [len(r.ndjson) // 2 for r in es.bulk_requests()] == [2, 2, 1]
    assert len(es.documents) == 5


# -- authentication ----------------------------------------------------------------------


def test_api_key_is_sent(es, tmp_path):
    es.require_auth("ApiKey c2VjcmV0OmtleQ==")
    sink, problems = from_config({"hosts": [es.url], "api_key": "c2VjcmV0OmtleQ==",
                                  "spool_dir": str(tmp_path / "s")}, tmp_path)
    assert problems == []
    sink.export([record(1)])
    sink.shutdown()
    assert {r.headers["authorization"] for r in es.requests} == {"ApiKey c2VjcmV0OmtleQ=="}
    assert len(es.documents) == 1


def test_basic_auth_with_a_password_file(es, tmp_path):
    (tmp_path / "es-password").write_text("s3cret\n")
    expected = "Basic " + base64.b64encode(b"lunettes:s3cret").decode()
    es.require_auth(expected)
    sink, problems = from_config({"hosts": es.url, "username": "lunettes",
                                  "password_file": "es-password",
                                  "spool_dir": str(tmp_path / "s")}, tmp_path)
    assert problems == []
    sink.export([record(1)])
    sink.shutdown()
    assert {r.headers["authorization"] for r in es.requests} == {expected}
    assert len(es.documents) == 1


def test_refused_credentials_spool_until_fixed(es, tmp_path):
    es.require_auth("ApiKey right")
    with make_sink(es, tmp_path, api_key="wrong") as sink:
        sink.export([record(1)])
        assert sink.force_flush(1.0) is False
        assert sink.stats["spooled"] == 1 and sink.stats["retried"] == 0
    assert es.documents == {}
    with make_sink(es, tmp_path, api_key="right") as fixed:
        assert fixed.force_flush(1.0) is True
    assert fixed.stats["drained"] == 1
    assert set(es.documents) == {(PODS, uid(1))}


# -- outages and the spool ---------------------------------------------------------------


def test_an_outage_spools_to_disk_and_later_exports_wait_behind_it(es, tmp_path, caplog):
    sink = make_sink(es, tmp_path, max_retries=2)
    es.go_down()
    with caplog.at_level(logging.ERROR, "lunettes.sinks.delivery"):
        sink.export([record(1, diag=diagnosis()), record(2)])
        assert sink.force_flush(5) is False
    assert "cannot take data" in caplog.text
    assert sink.stats["spooled"] == 3 and sink.stats["indexed"] == 0
    assert sink.stats["retried"] == 2 * 3  # two retries of the three documents
    assert sink.pending() == 3
    (spool_file,) = sorted((tmp_path / "spool").glob("*.jsonl"))
    assert spool_file.name == "000000000000-3-2.jsonl"  # 3 documents of 2 pods
    spooled = [json.loads(line) for line in spool_file.read_text().splitlines()]
    assert [(a["_index"], a["_id"]) for a in spooled] == [
        (PODS, uid(1)), (DIAGS, uid(1)), (PODS, uid(2))]
    assert spooled[0]["_source"] == record(1, diag=diagnosis()).to_dict()

    # Still down: the next batch goes straight behind the spool.
    sink.export([record(3)])
    assert sink.pending() == 4
    assert sink.force_flush(0.5) is False

    es.come_back()
    sink.export([record(4)])
    assert sink.force_flush() is True
    assert sink.pending() == 0
    assert sink.stats["drained"] == 5 and sink.stats["indexed"] == 5
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    ids = [meta["_id"] for r in es.bulk_requests() for a in r.ndjson[0::2]
           for meta in a.values()]
    assert ids == [uid(1), uid(1), uid(2), uid(3), uid(4)]  # oldest first, each once
    assert len(es.documents) == 5
    sink.shutdown()


def test_503_for_a_while_is_retried_without_spooling(es, tmp_path):
    es.fail_requests(2, 503, path="_bulk")
    with make_sink(es, tmp_path, max_retries=3) as sink:
        sink.export([record(1), record(2)])
    assert sink.stats == {**sink.stats, "indexed": 2, "retried": 4, "spooled": 0}
    assert len(es.bulk_requests()) == 3
    assert len(es.documents) == 2


def test_retries_stop_at_timeout_s_whatever_max_retries(es, tmp_path):
    es.fail_requests(100, 503, path="_bulk")
    # The first backoff (at least 5 s) would pass the 1 s timeout: no retry at all.
    sink = make_sink(es, tmp_path, max_retries=50, timeout_s=1.0, backoff_base_s=10.0,
                     backoff_max_s=10.0)
    sink.export([record(1)])
    assert sink.force_flush(5) is False
    assert sink.stats["retried"] == 0 and sink.stats["spooled"] == 1
    assert len(es.bulk_requests()) == 1
    sink.shutdown()


def test_a_long_503_spools_and_force_flush_drains(es, tmp_path):
    es.fail_requests(100, 503, path="_bulk")
    sink = make_sink(es, tmp_path, max_retries=1)
    sink.export([record(1)])
    assert sink.force_flush(5) is False and sink.stats["spooled"] == 1
    es.fail_requests(0)
    assert sink.force_flush() is True
    assert set(es.documents) == {(PODS, uid(1))}
    sink.shutdown()


def test_a_failed_template_install_spools_rather_than_writing_unmapped(es, tmp_path):
    es.fail_requests(100, 503, path="_index_template")
    sink = make_sink(es, tmp_path, max_retries=1)
    sink.export([record(1)])
    assert sink.force_flush(5) is False
    assert es.bulk_requests() == [] and sink.pending() == 1
    es.fail_requests(0)
    assert sink.force_flush() is True
    assert es.indices[PODS]["template"] == "lunettes-pods"
    assert set(es.documents) == {(PODS, uid(1))}
    sink.shutdown()


def test_partial_failures_retry_429_items_and_count_400_items(es, tmp_path, caplog):
    es.fail_item(uid(2), 429, times=2)
    es.fail_item(uid(3), 400)
    with caplog.at_level(logging.ERROR, "lunettes.sinks.elasticsearch"), \
            make_sink(es, tmp_path, max_retries=3) as sink:
        sink.export([record(1), record(2), record(3)])
    assert sink.stats["indexed"] == 2 and sink.stats["failed"] == 1
    assert sink.stats["retried"] == 2 and sink.stats["spooled"] == 0
    # The retries carried only the refused-for-now item.
    sizes = [len(r.ndjson) // 2 for r in es.bulk_requests()]
    assert sizes == [3, 1, 1]
    assert set(es.documents) == {(PODS, uid(1)), (PODS, uid(2))}
    assert uid(3) in caplog.text
    assert "document_parsing_exception" in caplog.text
    assert "failed to parse field [created]" in caplog.text


def test_items_refused_past_the_retries_are_spooled(es, tmp_path):
    es.fail_item(uid(1), 429)
    sink = make_sink(es, tmp_path, max_retries=1)
    sink.export([record(1), record(2)])
    assert sink.force_flush(5) is False
    assert sink.stats["indexed"] == 1 and sink.stats["spooled"] == 1
    es.recover()  # the pressure goes away
    assert sink.force_flush() is True
    assert set(es.documents) == {(PODS, uid(1)), (PODS, uid(2))}
    sink.shutdown()


def test_a_new_sink_drains_the_spool_an_old_one_left(es, tmp_path, caplog):
    es.go_down()
    old = make_sink(es, tmp_path, max_retries=0)
    old.export([record(1, diag=diagnosis())])
    old.export([record(2)])
    with caplog.at_level(logging.WARNING, "lunettes.sinks.delivery"):
        old.shutdown()
    assert "2 pod records stay spooled" in caplog.text
    assert len(list((tmp_path / "spool").glob("*.jsonl"))) == 2

    es.come_back()
    new = make_sink(es, tmp_path)
    assert new.force_flush() is True
    assert new.stats["drained"] == 3 and new.pending() == 0
    assert es.paths()[0] == "PUT /_ilm/policy/lunettes-retention"  # templates first
    assert set(es.documents) == {(PODS, uid(1)), (DIAGS, uid(1)), (PODS, uid(2))}
    new.shutdown()


def test_shutdown_delivers_what_is_queued_unless_elasticsearch_is_down(es, tmp_path):
    es.go_down()
    sink = make_sink(es, tmp_path, max_retries=0)
    sink.export([record(1)])
    assert sink.force_flush(5) is False
    began = time.monotonic()
    sink.shutdown()  # down: no wait, the document stays spooled
    assert time.monotonic() - began < 1.0
    assert DiskSpool(tmp_path / "spool", 2**20).pending() == 1
    es.come_back()
    sink = make_sink(es, tmp_path, max_retries=0)
    sink.export([record(2)])
    sink.shutdown()  # up: the spool then the queue are delivered
    assert set(es.documents) == {(PODS, uid(1)), (PODS, uid(2))}
    assert DiskSpool(tmp_path / "spool", 2**20).pending() == 0


def test_the_spool_drops_its_oldest_files_past_its_limit(es, tmp_path, caplog):
    es.go_down()
    # No probe while the batches are spooled (the first flush probes at once): a file
    # being sent is never dropped, so a probe would make the dropped ones depend on timing.
    sink = make_sink(es, tmp_path, max_retries=0, spool_max_mb=0.004,  # ~4 KB
                     backoff_base_s=600.0, backoff_max_s=600.0)
    with caplog.at_level(logging.ERROR, "lunettes.sinks.spool"):
        for n in range(1, 7):
            sink.export([record(n)])
        assert sink.force_flush(5) is False
    assert "over its limit" in caplog.text
    dropped = sink.stats["dropped"]
    assert dropped >= 1 and sink.pending() == 6 - dropped
    assert sink.lost == dropped
    assert sink.spool.size() <= 0.004 * 2**20
    es.come_back()
    assert sink.force_flush() is True
    # The newest survive; the dropped ones are exactly the oldest.
    assert {k[1] for k in es.documents} == {uid(n) for n in range(dropped + 1, 7)}
    sink.shutdown()


def test_the_spool_limit_never_drops_the_file_being_sent(tmp_path):
    spool = DiskSpool(tmp_path / "s", 250)
    first, _ = spool.append([{"n": 1, "pad": "x" * 90}])
    assert first is not None
    spool.busy = first
    spool.append([{"n": 2, "pad": "x" * 90}])
    _, dropped = spool.append([{"n": 3, "pad": "x" * 90}])
    assert dropped.count == 1
    assert [spool.read(f)[0]["n"] for f in spool.files()] == [1, 3]


def test_spool_files_are_whole_and_bad_lines_are_skipped(tmp_path, caplog):
    spool = DiskSpool(tmp_path / "s", 2**20)
    assert not (tmp_path / "s").exists()  # created on the first append
    spool.append([{"_index": "i", "_id": "a", "_source": {}}])
    path = spool.files()[0].path
    path.write_bytes(path.read_bytes() + b"{not json\n")
    (tmp_path / "s" / ".000000000009.jsonl.tmp").write_bytes(b"half a batch")
    again = DiskSpool(tmp_path / "s", 2**20)
    with caplog.at_level(logging.ERROR, "lunettes.sinks.spool"):
        assert again.read(again.files()[0]) == [{"_index": "i", "_id": "a", "_source": {}}]
    assert "not JSON" in caplog.text
    assert not list((tmp_path / "s").glob(".*.tmp"))
    again.append([{"_index": "i", "_id": "b", "_source": {}}])
    assert [f.path.name for f in again.files()] == ["000000000000-1-1.jsonl",
                                                    "000000000001-1-1.jsonl"]


def test_a_spool_written_before_counts_were_named_is_still_read(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "000000000007.jsonl").write_bytes(b'{"_id": "a"}\n{"_id": "b"}\n')
    spool = DiskSpool(tmp_path / "s", 2**20)
    (old,) = spool.files()
    assert (old.count, old.pods) == (2, 2)
    assert [a["_id"] for a in spool.read(old)] == ["a", "b"]
    spool.append([{"_id": "c"}])
    assert spool.files()[-1].path.name == "000000000008-1-1.jsonl"


# -- contract ----------------------------------------------------------------------------


def test_shutdown_twice_and_export_after_shutdown(es, tmp_path):
    sink = make_sink(es, tmp_path)
    sink.export([record(1)])
    sink.shutdown()
    sink.shutdown()
    with pytest.raises(SinkClosedError):
        sink.export([record(2)])
    assert sink.force_flush() is True


def test_building_opens_nothing_and_the_core_imports_without_the_client(
        tmp_path, monkeypatch):
    sink = ElasticsearchSink(["http://127.0.0.1:9"], spool_dir=tmp_path / "spool")
    assert sink._es is None and not (tmp_path / "spool").exists()
    sink.shutdown()

    monkeypatch.setitem(sys.modules, "elasticsearch", None)
    monkeypatch.delitem(sys.modules, "lunettes.sinks.elasticsearch")
    with pytest.raises(ImportError, match=r"pip install 'lunettes\[elasticsearch\]'"):
        load(SINKS, "elasticsearch")


# -- configuration -----------------------------------------------------------------------


def test_config_defaults_and_env(tmp_path):
    sink, problems = from_config({}, tmp_path, name="elasticsearch/prod")
    assert problems == []
    assert sink.hosts == ["http://localhost:9200"]
    assert sink.index_prefix == "lunettes" and sink.retention_days == 30
    assert sink.spool.directory == Path(".lunettes-spool/elasticsearch-prod")
    assert (sink.api_key, sink.basic_auth) == (None, None)

    sink, problems = from_config(
        {}, tmp_path, env={"ELASTICSEARCH_URL": "https://a.example:9243,https://b.example"})
    assert problems == [] and sink.hosts == ["https://a.example:9243", "https://b.example"]


def test_config_through_the_registry_builds_named_instances(tmp_path, es):
    problems: list[str] = []
    section = Section({"elasticsearch/prod": {"hosts": [es.url], "index_prefix": "prod",
                                              "spool_dir": str(tmp_path / "s")}},
                      "pipeline.yaml: sinks", problems)
    (sink,) = build_sinks(section, BuildContext(config_dir=tmp_path))
    assert problems == []
    assert isinstance(sink, ElasticsearchSink) and sink.index_prefix == "prod"
    sink.shutdown()


def test_config_errors_name_the_key_and_the_fix(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    _, problems = from_config({
        "hosts": ["http://es:9200", "es.example:9200", "http://no-port", 5],
        "index_prefx": "x",
        "bulk_size": "big",
        "verify_certs": "yes",
        "retention_days": 0,
        "max_retries": -1,
        "timeout_s": 0,
        "spool_max_mb": "lots",
        "username": "u",
        "api_key": "k",
        "ca_certs": "missing.pem",
    }, tmp_path)
    text = "\n".join(problems)
    assert "sinks.elasticsearch.index_prefx: unknown key (did you mean index_prefix?)" in text
    assert "sinks.elasticsearch.bulk_size: expected int, got str 'big'" in text
    assert "sinks.elasticsearch.verify_certs: expected bool, got str 'yes'" in text
    assert "sinks.elasticsearch.spool_max_mb: expected int or float, got str 'lots'" in text
    assert "sinks.elasticsearch.retention_days: must be at least 1, got 0" in text
    assert "sinks.elasticsearch.max_retries: must be at least 0, got -1" in text
    assert "sinks.elasticsearch.timeout_s: must be positive, got 0" in text
    assert "'es.example:9200' is not an http:// or https:// URL" in text
    assert "'http://no-port' needs a port (http://no-port:9200)" in text
    assert "sinks.elasticsearch.hosts: expected a URL string, got int 5" in text
    assert "sinks.elasticsearch.username: needs password or password_file" in text
    assert "sinks.elasticsearch.api_key: use api_key or username/password, not both" in text
    assert "sinks.elasticsearch.ca_certs: no such file" in text
    assert "TLS options need https:// hosts" in text

    _, problems = from_config({"hosts": 9200, "password": "p", "password_file": "f",
                               "index_prefix": "Lunettes"}, tmp_path)
    text = "\n".join(problems)
    assert "sinks.elasticsearch.hosts: expected str or list, got int 9200" in text
    assert "password_file: set password or password_file, not both" in text
    assert "index_prefix: 'Lunettes' index names are lowercase; use 'lunettes'" in text

    _, problems = from_config({"password_file": "nope"}, tmp_path)
    assert any("password_file: cannot read" in p for p in problems)
    assert any("password_file: needs username" in p for p in problems)

    sink, problems = from_config({"hosts": ["https://es:9243"], "ca_certs": "ca.pem",
                                  "verify_certs": True}, tmp_path)
    assert problems == [] and sink.ca_certs == str(tmp_path / "ca.pem")


def test_config_errors_are_raised_all_at_once_by_the_pipeline(tmp_path):
    problems: list[str] = []
    section = Section({"elasticsearch": {"bulk_sise": 10, "timeout_s": -1}},
                      "pipeline.yaml: sinks", problems)
    build_sinks(section, BuildContext(config_dir=tmp_path))
    error = ConfigError(problems)
    assert "sinks.elasticsearch.bulk_sise: unknown key (did you mean bulk_size?)" in str(error)
    assert "sinks.elasticsearch.timeout_s: must be positive" in str(error)


def test_mappings_cover_what_lunettes_writes():
    """Every scalar field of a pod record and a diagnosis document is mapped explicitly."""
    rec = record(1, diag=diagnosis())
    pod = rec.to_dict()
    mapped = tpl.POD_MAPPINGS["properties"]
    assert set(pod) - {"slo", "diagnosis"} <= set(mapped)
    assert set(pod["stages"][0]) <= set(mapped["stages"]["properties"])
    diag = tpl.diagnosis_document(pod)
    assert diag is not None
    assert set(diag) <= set(tpl.DIAGNOSIS_MAPPINGS["properties"])
    for key in ("evidence", "secondary"):
        assert set(diagnosis()[key][0]) <= set(
            tpl.DIAGNOSIS_MAPPINGS["properties"][key]["properties"]), key


# -- outages: the fault matrix ----------------------------------------------------------

ES_FAULTS = ["down", "hang", 429, 503, 500]


def start_fault(es: FakeElasticsearch, fault: str | int) -> None:
    if fault == "down":
        es.go_down()
    elif fault == "hang":
        es.hang()
    else:
        es.fail_requests(10**9, int(fault), path="_bulk")


def end_fault(es: FakeElasticsearch, fault: str | int) -> None:
    if fault == "down":
        es.come_back()
    else:
        es.recover()


def outage_sink(es: FakeElasticsearch, tmp_path: Path) -> ElasticsearchSink:
    return make_sink(es, tmp_path, timeout_s=1.0, bulk_size=2, backoff_base_s=0.01,
                     backoff_max_s=0.1)


@pytest.mark.parametrize("fault", ES_FAULTS)
def test_an_outage_then_recovery_indexes_every_document_exactly_once(es, tmp_path, fault):
    before, during, after = ([record(n) for n in r]
                             for r in (range(1, 7), range(7, 17), range(17, 23)))
    sink = outage_sink(es, tmp_path)
    sink.export(before)
    assert sink.force_flush(10) is True

    start_fault(es, fault)
    began = time.monotonic()
    for rec in during:
        sink.export([rec])
    assert time.monotonic() - began < 0.5  # export never waits on Elasticsearch
    wait_until(lambda: sink.spool.pending() > 0)
    assert sink.force_flush(10) is False

    end_fault(es, fault)
    sink.export(after)
    wait_until(lambda: sink.pending() == 0)
    assert sink.force_flush(10) is True
    sink.shutdown()
    assert es.writes == {(PODS, uid(n)): 1 for n in range(1, 23)}  # each written once
    assert sink.lost == 0 and sink.stats["dropped"] == 0
    assert sink.stats["drained"] == sink.stats["spooled"] > 0


@pytest.mark.parametrize("fault", ES_FAULTS)
def test_what_a_run_left_spooled_the_next_run_indexes_once(es, tmp_path, fault):
    start_fault(es, fault)
    # No probe for a minute: a request on the wire at the shutdown could still be taken
    # after the recovery (the answer never read: the one case sent twice).
    first = make_sink(es, tmp_path, timeout_s=1.0, bulk_size=2, backoff_base_s=60,
                      backoff_max_s=60)
    began = time.monotonic()
    first.export([record(n) for n in range(1, 7)])
    if fault == "hang":  # shut down with a request on the wire: it is spooled too
        es.wait_for_hung(1)
    else:
        wait_until(lambda: first.spool.pending_pods() == 6)
    first.shutdown()
    assert time.monotonic() - began < 5.0
    assert first.spool.pending_pods() == 6 and first.lost == 0

    end_fault(es, fault)
    second = outage_sink(es, tmp_path)
    assert second.force_flush(10) is True
    second.shutdown()
    assert es.writes == {(PODS, uid(n)): 1 for n in range(1, 7)}


# -- merging into stored documents -------------------------------------------------------


def test_a_record_never_replaces_a_stored_document_that_knows_more(es, tmp_path):
    """A partial, in-flight record of a Pod (a late block replayed alone) written over the
    complete document changes nothing; the complete one written over the partial one
    replaces it, diagnosis included."""
    complete = record(1, diag=diagnosis(), end_reason="delivered")
    partial = record(1, outcome="in_progress", end_reason="end_of_input", partial=True,
                     finished_us=None, stages=complete.stages[:1], results={})
    with make_sink(es, tmp_path) as sink:
        sink.export([complete])
        assert sink.force_flush() is True
        sink.export([partial])
    assert es.docs(PODS) == {(PODS, uid(1)): complete.to_dict()}
    assert es.docs(DIAGS)[(DIAGS, uid(1))]["reason"] == "ImagePullBackOff"

    es.documents.clear()
    with make_sink(es, tmp_path) as sink:
        sink.export([partial])
        assert sink.force_flush() is True
        assert DIAGS not in {index for index, _ in es.documents}
        sink.export([complete])
    assert es.docs(PODS) == {(PODS, uid(1)): complete.to_dict()}
    assert es.docs(DIAGS)[(DIAGS, uid(1))]["reason"] == "ImagePullBackOff"


def test_a_write_between_our_read_and_our_write_is_read_and_merged_again(es, tmp_path):
    """Another writer stores the complete record of a Pod after the sink read the stored
    (partial) one: the sink's conditional write is refused and it merges again, so the
    complete record stays."""
    complete = record(1, diag=diagnosis(), end_reason="delivered")
    partial = record(1, outcome="in_progress", end_reason="end_of_input", partial=True,
                     finished_us=None, stages=complete.stages[:1], results={})
    with make_sink(es, tmp_path) as sink:
        sink.export([partial])
        assert sink.force_flush() is True
        es.before_bulk = lambda: es.put(PODS, uid(1), complete.to_dict())
        sink.export([partial])
    assert es.docs(PODS) == {(PODS, uid(1)): complete.to_dict()}
    assert sink.stats["conflicts"] == 1 and sink.stats["failed"] == 0
    refused, accepted = es.bulk_requests()[1:]
    assert refused.ndjson[0]["index"]["if_seq_no"] < es.seq_nos[(PODS, uid(1))]
    assert accepted.ndjson[1] == complete.to_dict()
    # The diagnosis document follows the merged pod document.
    assert es.docs(DIAGS)[(DIAGS, uid(1))]["reason"] == "ImagePullBackOff"


def test_a_document_created_meanwhile_is_merged_not_overwritten(es, tmp_path):
    complete = record(1, end_reason="delivered")
    partial = record(1, outcome="in_progress", end_reason="end_of_input", partial=True,
                     finished_us=None, stages=complete.stages[:1])
    es.before_bulk = lambda: es.put(PODS, uid(1), complete.to_dict())
    with make_sink(es, tmp_path) as sink:
        sink.export([partial])
    assert es.docs(PODS) == {(PODS, uid(1)): complete.to_dict()}
    assert sink.stats["conflicts"] == 1
    first, second = es.bulk_requests()
    assert next(iter(first.ndjson[0])) == "create" and next(iter(second.ndjson[0])) == "index"
