"""The API over real HTTP: ``lunettes serve`` replays a simulated log (the bundled sample,
with one Pod name reused) into its SQLite store, and every endpoint is called on a real
uvicorn server on 127.0.0.1 and checked against what the pipeline makes of the log.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
import httpx
from api_server import SAMPLE, rename_pod, replay, sample_lines, serve

from lunettes.analyzers.diagnosisdefs import DiagnosisConfig
from lunettes.analyzers.stagedefs import StageSet
from lunettes.api.store import SQLiteStore
from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord
from lunettes.model.redact import redact
from lunettes.model.times import format_time
from lunettes.pipeline import DEFAULT_CONFIG_DIR
from lunettes.sinks.sqlite import SQLiteSink

JAEGER = "http://jaeger.test:16686"


@dataclass
class World:
    base: str
    records: dict[str, PodRecord]
    reused: tuple[str, str]
    """(namespace, name) of the Pod name two Pods had, one after the other."""
    store: Path
    client: httpx.Client

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(f"{self.base}{path}", params=params)

    def ok(self, path: str, **params: Any) -> Any:
        response = self.get(path, **params)
        assert response.status_code == 200, (path, params, response.text)
        return response.json()


def _reused_name_log(tmp: Path) -> tuple[Path, tuple[str, str]]:
    """The sample, with a Pod delivered later renamed to the name of a Pod that had ended."""
    records = sorted(replay([str(SAMPLE)]).values(), key=lambda r: r.created_us or 0)
    for first in records:
        if first.outcome not in ("completed", "failed", "deleted") or not first.last_seen_us:
            continue
        for later in records:
            if (later.namespace == first.namespace and later.outcome == "delivered"
                    and (later.created_us or 0) > first.last_seen_us + 5_000_000):
                log = tmp / "audit.jsonl"
                log.write_bytes(b"".join(rename_pod(sample_lines(), later.name, first.name)))
                return log, (first.namespace, first.name)
    raise AssertionError("no Pod pair to reuse a name with")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("api")
    log, reused = _reused_name_log(tmp)
    records = replay([str(log)])
    store = tmp / "store.db"
    with serve([str(log), "--store", str(store), "--jaeger-url", JAEGER], tmp) as base, \
            httpx.Client(timeout=60) as client:
        yield World(base, records, reused, store, client)


def expected(record: PodRecord) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(redact(record.to_dict())))


# -- Pods --------------------------------------------------------------------------------

def test_every_pod_by_uid_as_the_pipeline_made_it(world: World) -> None:
    assert world.ok("/api/v1/info") == {"store": "sqlite", "pods": len(world.records),
                                        "jaeger_url": JAEGER, "auth": False,
                                        "version": "0.1.0", "results": [
        {"name": "diagnosis", "roles": ["diagnosis", "fault_intervals"], "headline": "reason"},
        {"name": "slo", "roles": ["slo"], "headline": "result"}]}
    for uid, record in world.records.items():
        got = world.ok(f"/api/v1/pods/{uid}")
        links = got.pop("links")
        assert got == expected(record)
        assert links == {"self": f"/api/v1/pods/{uid}", "trace": f"/api/v1/pods/{uid}/trace",
                         "jaeger": f"{JAEGER}/trace/{trace_id(uid).hex()}"}
        assert "requestObject" not in str(got) and "responseObject" not in str(got)


def test_stages_diagnosis_and_slo_of_a_pod(world: World) -> None:
    failed = [r for r in world.records.values() if r.outcome == "failed"]
    assert failed
    for record in failed[:5] + list(world.records.values())[:5]:
        data = expected(record)
        assert world.ok(f"/api/v1/pods/{record.uid}/stages") == {
            "uid": record.uid, "stages": data["stages"]}
        diagnosis = world.ok(f"/api/v1/pods/{record.uid}/diagnosis")
        assert diagnosis == {"uid": record.uid, "diagnosis": data["diagnosis"]}
        assert world.ok(f"/api/v1/pods/{record.uid}/slo") == {"uid": record.uid,
                                                              "slo": data["slo"]}
    evicted = next(r for r in failed if r.results["diagnosis"]["reason"])
    diagnosis = world.ok(f"/api/v1/pods/{evicted.uid}/diagnosis")["diagnosis"]
    assert diagnosis["reason"] and diagnosis["evidence"]
    assert all(e["audit_id"] and e["time"] for e in diagnosis["evidence"])


def test_by_name_latest_and_every_incarnation(world: World) -> None:
    namespace, name = world.reused
    same = sorted((r for r in world.records.values()
                   if (r.namespace, r.name) == (namespace, name)),
                  key=lambda r: r.created_us or 0, reverse=True)
    assert len(same) == 2 and same[0].uid != same[1].uid
    latest = world.ok(f"/api/v1/namespaces/{namespace}/pods/{name}")
    assert latest["uid"] == same[0].uid
    every = world.ok(f"/api/v1/namespaces/{namespace}/pods/{name}/incarnations")
    assert [p["uid"] for p in every["items"]] == [r.uid for r in same]
    assert every["items"][1]["outcome"] == same[1].outcome
    one = world.ok(f"/api/v1/namespaces/{namespace}/pods/{name}/incarnations", limit=1)
    assert [p["uid"] for p in one["items"]] == [same[0].uid]


def _all_pages(world: World, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        page = world.ok("/api/v1/pods", limit=limit, **params,
                        **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["items"]) == limit
    raise AssertionError("paging does not end")


def test_search_pages_through_everything_in_order(world: World) -> None:
    everyone = set(world.records)
    newest = _all_pages(world, 37)
    assert [i["uid"] for i in newest] and {i["uid"] for i in newest} == everyone
    assert len(newest) == len(everyone)
    keys = [(i["created"], i["uid"]) for i in newest]
    assert keys == sorted(keys, reverse=True)
    oldest = _all_pages(world, 100, sort="created")
    assert [i["uid"] for i in oldest] == [i["uid"] for i in reversed(newest)]
    longest = _all_pages(world, 64, sort="-duration")
    durations = [i["duration_s"] if i["duration_s"] is not None else -1 for i in longest]
    assert durations == sorted(durations, reverse=True) and len(longest) == len(everyone)
    by_name = _all_pages(world, 50, sort="name")
    names = [f"{i['namespace']}/{i['name']}" for i in by_name]
    assert names == sorted(names) and len(by_name) == len(everyone)
    item = newest[0]
    record = world.records[item["uid"]]
    slo, diagnosis = record.results["slo"], record.results["diagnosis"]
    assert item == {
        "uid": record.uid, "namespace": record.namespace, "name": record.name,
        "node": record.node, "created": format_time(record.created_us or 0),
        "finished": record.to_dict()["finished"], "duration_s": record.duration_s,
        "outcome": record.outcome, "partial": record.partial,
        "owner_kind": record.owner_kind, "owner_name": record.owner_name,
        "slo_result": slo["result"], "slo_class": slo["class"],
        "platform_s": slo.get("platform_s"), "reason": diagnosis["reason"],
        "links": {"self": f"/api/v1/pods/{record.uid}",
                  "trace": f"/api/v1/pods/{record.uid}/trace",
                  "jaeger": f"{JAEGER}/trace/{trace_id(record.uid).hex()}"}}


def test_search_filters(world: World) -> None:
    records = list(world.records.values())
    some = sorted(records, key=lambda r: r.created_us or 0)
    middle = some[len(some) // 3].created_us or 0
    late = some[2 * len(some) // 3].created_us or 0
    with_owner = next(r for r in records if r.owner_kind == "ReplicaSet")
    with_reason = next(r for r in records if r.results["diagnosis"]["reason"])
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"namespace": "payments"}, {r.uid for r in records if r.namespace == "payments"}),
        ({"name_prefix": "cart-"}, {r.uid for r in records if r.name.startswith("cart-")}),
        ({"namespace": "shop", "name_prefix": "c"},
         {r.uid for r in records if r.namespace == "shop" and r.name.startswith("c")}),
        ({"uid": with_owner.uid}, {with_owner.uid}),
        ({"node": "worker-02"}, {r.uid for r in records if r.node == "worker-02"}),
        ({"outcome": "failed"}, {r.uid for r in records if r.outcome == "failed"}),
        ({"slo_result": "violated"},
         {r.uid for r in records if r.results["slo"]["result"] == "violated"}),
        ({"slo_class": "stateful"},
         {r.uid for r in records if r.results["slo"]["class"] == "stateful"}),
        ({"reason": with_reason.results["diagnosis"]["reason"]},
         {r.uid for r in records
          if r.results["diagnosis"]["reason"] == with_reason.results["diagnosis"]["reason"]}),
        ({"owner_kind": "ReplicaSet", "owner_name": with_owner.owner_name},
         {r.uid for r in records if (r.owner_kind, r.owner_name)
          == ("ReplicaSet", with_owner.owner_name)}),
        ({"since": format_time(middle), "until": format_time(late)},
         {r.uid for r in records if middle <= (r.created_us or 0) < late}),
        ({"outcome": "failed", "slo_result": "met"}, set()),
    ]
    for params, wanted in cases:
        got = {i["uid"] for i in _all_pages(world, 500, **params)}
        assert got == wanted, params
        assert wanted or params.get("slo_result") == "met"


def test_bad_parameters_are_4xx_with_a_clear_message(world: World) -> None:
    uid = next(iter(world.records))
    page = world.ok("/api/v1/pods", limit=2)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/api/v1/pods", {"since": "yesterday"}, 422, "since"),
        ("/api/v1/pods", {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
         400, "since: must not be after until"),
        ("/api/v1/pods", {"limit": 0}, 422, "limit"),
        ("/api/v1/pods", {"limit": 501}, 422, "limit"),
        ("/api/v1/pods", {"outcome": "exploded"}, 422, "outcome"),
        ("/api/v1/pods", {"sort": "size"}, 422, "sort"),
        ("/api/v1/pods", {"cursor": "not-a-cursor"}, 400, "cursor: not a cursor"),
        ("/api/v1/pods", {"cursor": page["next_cursor"], "sort": "name"}, 400,
         "made for sort='-created'"),
        ("/api/v1/pods/no-such-uid", {}, 404, "no Pod with uid 'no-such-uid'"),
        (f"/api/v1/pods/{uid}x/trace", {}, 404, "no Pod with uid"),
        ("/api/v1/namespaces/shop/pods/nobody", {}, 404, "no Pod shop/nobody"),
        ("/api/v1/namespaces/shop/pods/nobody/incarnations", {}, 404, "no Pod shop/nobody"),
        ("/api/v1/slo/summary", {"until": "2020-01-01", "since": "2021-01-01"}, 400,
         "since: must not be after until"),
        ("/api/v1/nothing", {}, 404, "Not Found"),
    ]
    for path, params, status, fragment in cases:
        response = world.get(path, **params)
        assert response.status_code == status, (path, params, response.text)
        assert fragment in response.text, (path, params, response.text)
    assert httpx.post(f"{world.base}/api/v1/pods", timeout=5).status_code == 405


# -- trace, SLO summary, reasons ---------------------------------------------------------

def test_trace_spans_carry_the_ids_the_otlp_sink_exports(world: World) -> None:
    pytest.importorskip("opentelemetry.proto", reason="needs the otlp extra")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from lunettes.model.spans import pod_trace
    from lunettes.sinks.otlp_encode import OTLPEncoder

    def attributes_of(kvs: Any) -> dict[str, Any]:
        return {a.key: getattr(a.value, a.value.WhichOneof("value")) for a in kvs}

    encoder = OTLPEncoder()
    checked = with_events = 0
    for uid, record in world.records.items():
        answer = world.ok(f"/api/v1/pods/{uid}/trace")
        trace = pod_trace(record)
        if trace is None:
            assert answer["spans"] == []
            continue
        request = ExportTraceServiceRequest.FromString(encoder.resource_spans(trace))
        exported = request.resource_spans[0].scope_spans[0].spans
        assert answer["trace_id"] == trace_id(uid).hex() == exported[0].trace_id.hex()
        assert answer["jaeger_url"] == f"{JAEGER}/trace/{answer['trace_id']}"
        assert len(answer["spans"]) == len(exported)
        for got, span in zip(answer["spans"], exported, strict=True):
            assert (got["span_id"], got["parent_span_id"] or "", got["name"],
                    got["start_unix_nano"], got["end_unix_nano"], got["attributes"]) == (
                span.span_id.hex(), span.parent_span_id.hex(), span.name,
                span.start_time_unix_nano, span.end_time_unix_nano,
                attributes_of(span.attributes)), uid
            assert (got["status"]["code"] == "error") == (span.status.code == 2)
            assert [(e["name"], e["time_unix_nano"], e["attributes"]) for e in got["events"]] \
                == [(e.name, e.time_unix_nano, redact(attributes_of(e.attributes)))
                    for e in span.events], uid
            assert all(e["time"] == format_time(e["time_unix_nano"] // 1000)
                       for e in got["events"])
            with_events += bool(span.events)
        root = answer["spans"][0]
        assert root["span_id"] == span_id(uid, root["stage"], root["instance"]).hex()
        checked += 1
    assert checked > 250
    assert with_events > 10


def test_slo_summary_by_namespace_and_class(world: World) -> None:
    records = list(world.records.values())
    summary = world.ok("/api/v1/slo/summary")
    results = Counter(r.results["slo"]["result"] for r in records)
    overall = summary["overall"]
    assert overall["count"] == len(records)
    assert {k: v for k, v in overall["results"].items() if v} == dict(results)
    assert overall["success_ratio"] == pytest.approx(
        results["met"] / (results["met"] + results["violated"]))
    delivered = sorted(r.results["slo"]["platform_s"] for r in records
                       if r.outcome in ("delivered", "completed"))
    assert overall["delivered"] == len(delivered)
    assert overall["delivery_s"]["p50"] == pytest.approx(statistics.median(delivered))
    assert delivered[0] <= overall["delivery_s"]["p90"] <= overall["delivery_s"]["p99"] \
        <= delivered[-1]
    groups = {(g["namespace"], g["slo_class"]): g for g in summary["groups"]}
    assert groups.keys() == {(r.namespace, r.results["slo"]["class"]) for r in records}
    for (namespace, slo_class), group in groups.items():
        mine = [r for r in records
                if (r.namespace, r.results["slo"]["class"]) == (namespace, slo_class)]
        assert group["count"] == len(mine)
    one = world.ok("/api/v1/slo/summary", namespace="payments", slo_class="standard")
    assert [(g["namespace"], g["slo_class"]) for g in one["groups"]] == [
        ("payments", "standard")]
    assert one["overall"]["count"] == groups[("payments", "standard")]["count"]
    first = min(r.created_us or 0 for r in records)
    window = world.ok("/api/v1/slo/summary", since=format_time(first),
                      until=format_time(first + 600_000_000))
    assert window["overall"]["count"] == sum(
        1 for r in records if first <= (r.created_us or 0) < first + 600_000_000)
    assert window["since"] == format_time(first) and not window["truncated"]
    empty = world.ok("/api/v1/slo/summary", since="2030-01-01T00:00:00Z")
    assert empty["overall"]["count"] == 0 and empty["overall"]["success_ratio"] is None


def test_reason_code_reference(world: World) -> None:
    names = tuple(s.name for s in StageSet.load(DEFAULT_CONFIG_DIR / "stages.yaml").stages)
    config = DiagnosisConfig.load(DEFAULT_CONFIG_DIR / "diagnosis.yaml", names)
    answer = world.ok("/api/v1/reasons")
    assert [r["code"] for r in answer["reasons"]] == list(config.codes)
    evicted = next(r for r in answer["reasons"] if r["code"] == "Evicted")
    assert evicted["hint"] == config.codes["Evicted"].hint
    assert answer["no_progress_after_s"] == config.deadline_us / 1e6
    used = {r.results["diagnosis"]["reason"] for r in world.records.values()} - {None}
    assert used <= set(config.codes)


# -- docs, page, health ------------------------------------------------------------------

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)


def test_openapi_docs_and_page_are_served_without_a_cdn(world: World) -> None:
    spec = world.ok("/openapi.json")
    paths = set(spec["paths"])
    assert {"/api/v1/pods", "/api/v1/pods/{uid}", "/api/v1/pods/{uid}/stages",
            "/api/v1/pods/{uid}/diagnosis", "/api/v1/pods/{uid}/slo",
            "/api/v1/pods/{uid}/trace", "/api/v1/namespaces/{namespace}/pods/{name}",
            "/api/v1/namespaces/{namespace}/pods/{name}/incarnations",
            "/api/v1/slo/summary", "/api/v1/reasons", "/api/v1/info", "/healthz",
            "/readyz", "/metrics"} <= paths
    assert all(method == "get" for item in spec["paths"].values() for method in item)
    docs = world.get("/docs")
    assert docs.status_code == 200 and not EXTERNAL.search(docs.text), docs.text
    for asset in re.findall(r"""(?:src|href)=["'](/docs/assets/[^"']+)""", docs.text):
        assert world.get(asset).status_code == 200, asset
    page = world.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not EXTERNAL.search(page.text)
    assets = re.findall(r"""(?:src|href)=["'](/web/[^"']+)""", page.text)
    assert {"/web/app.js", "/web/style.css"} <= set(assets)
    for asset in assets:
        response = world.get(asset)
        assert response.status_code == 200, asset
        text = response.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "http://" not in text and "https://" not in text, asset


def test_health_and_metrics_are_kept(world: World) -> None:
    assert world.ok("/healthz")["phase"] == "done"
    assert world.ok("/readyz")["ready"] is True
    metrics = world.get("/metrics").text
    assert re.search(r"^lunettes_pods_total\{outcome=\"failed\"\} \d+", metrics, re.M)


# -- auth --------------------------------------------------------------------------------

def test_bearer_token_guards_the_api(tmp_path: Path, world: World) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-t0ken\n")
    uid = next(iter(world.records))
    with serve(["--store", str(world.store), "--api-token-file", str(token_file)],
               tmp_path) as base:
        good = {"Authorization": "Bearer s3cret-t0ken"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-t0ken"},
                        {"Authorization": "Basic s3cret-t0ken"}):
            response = httpx.get(f"{base}/api/v1/pods/{uid}", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert "bearer token" in response.json()["detail"]
        assert httpx.get(f"{base}/api/v1/pods/{uid}", headers=good).json()["uid"] == uid
        assert httpx.get(f"{base}/api/v1/info", headers=good).json()["auth"] is True
        for open_path in ("/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/docs",
                          "/web/app.js"):
            assert httpx.get(f"{base}{open_path}").status_code == 200, open_path
        spec = httpx.get(f"{base}/openapi.json").json()
        assert "HTTPBearer" in spec["components"]["securitySchemes"]
    env = {**_environ(), "LUNETTES_API_TOKEN": "t0k"}
    with serve(["--store", str(world.store), "--auth-health"], tmp_path, "serve2.log",
               env=env) as base:
        for path in ("/healthz", "/readyz", "/metrics", "/api/v1/pods"):
            assert httpx.get(f"{base}{path}").status_code == 401, path
            assert httpx.get(f"{base}{path}", headers={"Authorization": "Bearer t0k"}
                             ).status_code == 200, path


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


# -- the store ---------------------------------------------------------------------------

def test_store_written_by_an_older_lunettes_is_upgraded(tmp_path: Path, world: World) -> None:
    old = tmp_path / "v1.db"
    db = sqlite3.connect(old)
    db.executescript("""
        CREATE TABLE pods (uid TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,
            node TEXT NOT NULL, created_us INTEGER, finished_us INTEGER, outcome TEXT NOT NULL,
            partial INTEGER NOT NULL, owner_kind TEXT NOT NULL, owner_name TEXT NOT NULL,
            duration_s REAL, record BLOB NOT NULL);
        CREATE INDEX pods_by_name ON pods (namespace, name, created_us);
    """)
    records = list(world.records.values())[:20]
    db.executemany("INSERT INTO pods VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", [
        (r.uid, r.namespace, r.name, r.node, r.created_us, r.finished_us, r.outcome,
         int(r.partial), r.owner_kind, r.owner_name, r.duration_s, orjson.dumps(r.to_dict()))
        for r in records])
    db.commit()
    db.close()
    store = SQLiteStore(old)
    try:
        from lunettes.api.store import PodQuery

        violated = {r.uid for r in records if r.results["slo"]["result"] == "violated"}
        page = store.search(PodQuery(slo_result="violated", limit=100))
        assert {i["uid"] for i in page.items} == violated
        assert store.get(records[0].uid) == records[0].to_dict() | {}
    finally:
        store.close()
    sink = SQLiteSink(old)  # the sink writes the upgraded schema too
    sink.export(records[:1])
    assert sink.count() == 20
    sink.shutdown()


def test_store_file_not_written_yet_reads_empty(tmp_path: Path) -> None:
    from lunettes.api.store import PodQuery

    store = SQLiteStore(tmp_path / "later.db")
    assert store.get("x") is None and store.count() == 0
    assert store.search(PodQuery()).items == [] and store.by_name("a", "b") == []
    overall, groups, truncated = store.slo_summary(None, None, None, None, 10)
    assert overall["count"] == 0 and groups == [] and not truncated


def test_delivery_analysis_is_the_cli_report_over_the_same_store(
        world: World, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """The API serves what ``lunettes analyze delivery --store`` prints for its store."""
    pytest.importorskip("statsmodels", reason="needs the analyze extra")
    from lunettes.cli.main import main

    assert main(["analyze", "delivery", "--store", str(world.store), "--format",
                 "json"]) == 0
    cli = orjson.loads(capsysbinary.readouterr().out)
    api = world.ok("/api/v1/analysis/delivery")
    assert api.pop("read") == len(world.records) and api.pop("truncated") is False
    assert [api.pop(k) for k in ("since", "until", "namespace")] == [None, None, None]
    assert api == cli and cli["pods"] > 0


def test_serve_analyzes_the_api_server_load_of_its_audit_files(world: World) -> None:
    pytest.importorskip("statsmodels", reason="needs the analyze extra")
    report = world.ok("/api/v1/analysis/apiserver", top=3)
    assert report["requests"] > 0 and len(report["top"]["user_agent"]) <= 3
