"""The API's Elasticsearch reader against the local fake of Elasticsearch 8 (no real one
can be installed here): the Elasticsearch sink writes the replayed sample, and the reader
answers every query as the SQLite store does; ``lunettes serve --api-store
elasticsearch`` serves it over HTTP; an unreachable Elasticsearch answers 503."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("elasticsearch", reason="needs the elasticsearch extra")
import httpx
from api_server import SAMPLE, close, replay, serve
from fake_es import FakeElasticsearch

from lunettes.api.es_store import ElasticsearchStore
from lunettes.api.store import InvalidQuery, PodQuery, SQLiteStore, StoreUnavailable
from lunettes.model.record import PodRecord
from lunettes.model.times import format_time
from lunettes.sinks.elasticsearch import ElasticsearchSink
from lunettes.sinks.sqlite import SQLiteSink


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[FakeElasticsearch, ElasticsearchStore, SQLiteStore,
                               dict[str, PodRecord]]]:
    tmp = tmp_path_factory.mktemp("es")
    records = replay([str(SAMPLE)])
    fake = FakeElasticsearch().start()
    sink = ElasticsearchSink([fake.url], spool_dir=tmp / "spool", index_prefix="lunettes")
    sink.export(list(records.values()))
    sink.shutdown()
    assert sink.stats["indexed"] >= len(records)
    sqlite = SQLiteSink(tmp / "store.db")
    sqlite.export(list(records.values()))
    sqlite.shutdown()
    es = ElasticsearchStore([fake.url], index_prefix="lunettes")
    reference = SQLiteStore(tmp / "store.db")
    try:
        yield fake, es, reference, records
    finally:
        es.close()
        reference.close()
        fake.stop()


def _pages(store: Any, query: PodQuery) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        page = store.search(replace(query, cursor=cursor))
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("paging does not end")


def test_reader_answers_like_the_sqlite_store(stores: Any) -> None:
    fake, es, reference, records = stores
    assert es.count() == reference.count() == len(records)
    for uid in list(records)[:40]:
        assert es.get(uid) == reference.get(uid) == orjson.loads(
            orjson.dumps(records[uid].to_dict()))
    assert es.get("no-such-uid") is None
    some = next(iter(records.values()))
    assert es.by_name(some.namespace, some.name) == reference.by_name(some.namespace,
                                                                      some.name)
    created = sorted(r.created_us or 0 for r in records.values())
    since, until = created[50], created[200]
    failed = next(r for r in records.values() if r.outcome == "failed")
    queries = [
        PodQuery(limit=23), PodQuery(sort="created", limit=50),
        PodQuery(sort="-duration", limit=40), PodQuery(sort="duration", limit=40),
        PodQuery(sort="name", limit=64), PodQuery(sort="-name", limit=64),
        PodQuery(namespace="shop", name_prefix="c", limit=5),
        PodQuery(outcome="failed", limit=4), PodQuery(slo_result="violated"),
        PodQuery(slo_class="stateful"), PodQuery(reason=failed.results["diagnosis"]["reason"]),
        PodQuery(node="worker-03"), PodQuery(owner_kind="StatefulSet", limit=7),
        PodQuery(uid=failed.uid),
        PodQuery(since_us=since - since % 1000, until_us=until - until % 1000, limit=30),
    ]
    for query in queries:
        got, want = _pages(es, query), _pages(reference, query)
        assert [i["uid"] for i in got] == [i["uid"] for i in want], query
        assert got == want, query
    searches = [r for r in fake.requests if r.path.endswith("/_search")]
    assert all(r.path == "/lunettes-pods-*/_search" for r in searches)
    with pytest.raises(InvalidQuery, match="cursor"):
        es.search(PodQuery(cursor="garbage"))


def test_serve_reads_elasticsearch(stores: Any, tmp_path: Path) -> None:
    fake, _, _, records = stores
    failed = sorted((r for r in records.values() if r.outcome == "failed"),
                    key=lambda r: r.created_us or 0, reverse=True)
    with serve(["--api-store", "elasticsearch", "--es-url", fake.url, "--jaeger-url",
                "http://jaeger.test:16686"], tmp_path) as base, \
            httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/api/v1/info").json()["store"] == "elasticsearch"
        page = client.get("/api/v1/pods", params={"outcome": "failed", "limit": 500}).json()
        assert [i["uid"] for i in page["items"]] == [r.uid for r in failed]
        pod = client.get(f"/api/v1/pods/{failed[0].uid}").json()
        assert pod["diagnosis"] == failed[0].results["diagnosis"]
        trace = client.get(f"/api/v1/pods/{failed[0].uid}/trace").json()
        assert trace["jaeger_url"] == f"http://jaeger.test:16686/trace/{trace['trace_id']}"
        assert client.get("/api/v1/slo/summary").json()["overall"]["count"] == len(records)
        assert client.get("/api/v1/pods/nobody").status_code == 404
        since = format_time(min(r.created_us or 0 for r in records.values()))
        assert client.get("/api/v1/pods", params={"since": since}).status_code == 200


def test_unreachable_elasticsearch_is_a_503(tmp_path: Path) -> None:
    fake = FakeElasticsearch().start()
    url = fake.url
    fake.stop()
    store = ElasticsearchStore([url], timeout_s=2)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        store.get("x")
    store.close()
    with serve(["--api-store", "elasticsearch", "--es-url", url], tmp_path) as base:
        answer = httpx.get(f"{base}/api/v1/pods", timeout=30)
        assert answer.status_code == 503
        assert "Elasticsearch unreachable" in answer.json()["detail"]


def test_records_for_the_analysis_read_like_the_sqlite_store(stores: Any) -> None:
    _, es, reference, records = stores

    def by_uid(found: tuple[list[dict[str, Any]], bool]) -> tuple[list[Any], bool]:
        return sorted(found[0], key=lambda r: r["uid"]), found[1]

    everything = by_uid(es.records(None, None, None, 10_000))
    assert everything == by_uid(reference.records(None, None, None, 10_000))
    assert len(everything[0]) == len(records) and not everything[1]
    first, truncated = es.records(None, None, "payments", 10)
    assert len(first) == 10 and truncated and {r["namespace"] for r in first} == {"payments"}
    created = sorted(r.created_us or 0 for r in records.values())
    since, until = created[50] - created[50] % 1000, created[200] - created[200] % 1000
    assert by_uid(es.records(since, until, None, 10_000)) == by_uid(
        reference.records(since, until, None, 10_000))


def test_the_summary_is_elasticsearch_aggregations_equal_to_the_sqlite_answers(
        stores: Any) -> None:
    """One search of no hits, aggregations only (terms, filter, percentiles, value_count,
    answered by the fake from its documents with numpy), gives what the SQLite store
    computes in SQL, for every kind of window."""
    fake, es, reference, records = stores
    created = sorted(r.created_us or 0 for r in records.values())
    since, until = created[40] - created[40] % 1000, created[250] - created[250] % 1000
    windows = [(None, None, None, None), (None, None, "payments", None),
               (None, None, None, "standard"), (since, until, None, None),
               (since, until, "shop", "stateful"), (None, None, "nowhere", None)]
    for window in windows:
        before = len(fake.requests)
        got = es.slo_summary(*window, limit=1)
        want = reference.slo_summary(*window, limit=10_000)
        assert close(got, want), (window, got, want)
        (request,) = fake.requests[before:]
        assert request.path == "/lunettes-pods-*/_search"
        assert request.json["size"] == 0 and "aggs" in request.json
    overall, groups, truncated = es.slo_summary(None, None, None, None, 1)
    assert overall["count"] == len(records) and not truncated
    assert len(groups) > 3 and overall["delivery_s"]["p99"] is not None


def test_a_summary_over_more_groups_than_it_shows_says_truncated(
        stores: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, es, _, records = stores
    monkeypatch.setattr("lunettes.api.es_store.MAX_NAMESPACES", 1)
    _, groups, truncated = es.slo_summary(None, None, None, None, 10_000)
    counts = Counter(r.namespace for r in records.values() if "slo" in r.results)
    busiest = min(counts, key=lambda n: (-counts[n], n))  # Elasticsearch's bucket order
    assert truncated and {g["namespace"] for g in groups} == {busiest}
