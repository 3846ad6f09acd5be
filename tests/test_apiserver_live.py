"""The API server load analysis fed by live sources counts what a plain json read of the
same events counts, and what the analysis of the same lines as a file counts: the
webhook (EventList batches over HTTP into ``lunettes serve --webhook --apiserver-load``,
whose /api/v1/analysis/apiserver answers from the live counts), JetStream (a real
nats-server: a receiver publishes, an instance with the analysis reads every subject) and
Elasticsearch (the local fake)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from api_server import event_lists, running, wait_for
from test_apiserver_scan import counted

from lunettes.apiserver.stream import RequestStream
from lunettes.cli.main import main
from lunettes.pipeline import DEFAULT_CONFIG_DIR, load_config
from lunettes.simulate.apiserver_traffic import Injection, generate

FINAL = ("ResponseComplete", "Panic")


def traffic_lines() -> list[bytes]:
    """Two hours of simulated API traffic (with a throttled list storm), in time order."""
    traffic = generate(11, intervals=120, nodes=3,
                       injections=[Injection("list_storm", "burst", 60, 62, 80.0)])
    return sorted(traffic.lines(), key=lambda line: orjson.loads(line)[
        "requestReceivedTimestamp"])


def truth(lines: list[bytes]) -> Counter[tuple[str, str, int]]:
    """(verb, resource[/subresource], code) of every final event, read with the standard
    library."""
    found: Counter[tuple[str, str, int]] = Counter()
    for line in lines:
        event = json.loads(line)
        if event["stage"] in FINAL:
            ref = event.get("objectRef", {})
            resource = "/".join(filter(None, (ref.get("resource"), ref.get("subresource"))))
            found[event["verb"], resource, event["responseStatus"]["code"]] += 1
    return found


def by_verb_resource_code(stream: RequestStream) -> Counter[tuple[str, str, int]]:
    """What the stream's Prometheus counts hold, per (verb, resource, code)."""
    found: Counter[tuple[str, str, int]] = Counter()
    for (_, verb, resource, code, _), n in stream.counts.requests.items():
        found[verb, "" if resource == "(non-resource)" else resource, int(code)] += n
    return found


def file_analysis(tmp: Path, lines: list[bytes]) -> RequestStream:
    path = tmp / "audit.log"
    path.write_bytes(b"".join(lines))
    stream = RequestStream()
    stream.read([str(path)])
    return stream


def live_snapshot(data: dict[str, Any], total: int) -> RequestStream:
    """Run the pipeline of ``data`` (with the ``requests`` processor first) on a thread
    until its analysis counted ``total`` requests; a snapshot of its counts then."""
    data["processors"] = ["requests", *data["processors"]]
    with running(data, {}) as pipeline:
        stream = pipeline.requests
        assert stream is not None
        return wait_for(lambda: (s := stream.snapshot()).requests == total and s,
                        "every request counted", 120)


def test_webhook_batches_feed_the_analysis_serve_answers_from_its_live_counts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("fastapi", reason="needs the serve extra")
    pytest.importorskip("statsmodels", reason="needs the analyze extra")
    from test_serve import lunettes_serve

    lines = traffic_lines()
    expected = truth(lines)
    with lunettes_serve([], tmp_path, "--webhook", "--webhook-spool", str(tmp_path / "spool"),
                        "--apiserver-load") as base, httpx.Client(timeout=60) as client:
        for body in event_lists(lines, 250):
            answer = client.post(f"{base}/audit/webhook", content=body)
            assert answer.status_code == 200, answer.text

        def report() -> dict[str, Any] | None:
            got = client.get(f"{base}/api/v1/analysis/apiserver",
                             params={"refresh": "true", "top": 50})
            assert got.status_code == 200, got.text
            body = got.json()
            return body if body["requests"] == sum(expected.values()) else None

        live = wait_for(report, "every request counted", 120)
    verbs: Counter[str] = Counter()
    for (verb, _, _), n in expected.items():
        verbs[verb] += n
    assert {item["value"]: item["requests"] for item in live["top"]["verb"]} == verbs
    path = tmp_path / "audit.log"
    path.write_bytes(b"".join(lines))
    assert main(["analyze", "apiserver", str(path), "--format", "json", "--top", "50"]) == 0
    alone = json.loads(capsys.readouterr().out)
    live.pop("computed_at")
    assert live == alone


def test_an_instance_reading_every_jetstream_subject_counts_every_request(
        tmp_path: Path) -> None:
    pytest.importorskip("nats", reason="needs the nats extra")
    from nats_server import nats_server
    from test_jetstream import PARTITIONS, nats_source, pipeline_data, receiver

    lines = traffic_lines()
    expected = truth(lines)
    alone = file_analysis(tmp_path, lines)
    with nats_server(tmp_path / "js") as url:
        with receiver(tmp_path, url) as webhook, httpx.Client(timeout=60) as client:
            for body in event_lists(lines, 250):
                answer = client.post(webhook, content=body)
                assert answer.status_code == 200, answer.text
        data = pipeline_data(tmp_path, nats_source(url, list(range(PARTITIONS)), "load"),
                             "nats", checkpoint=False)
        snapshot = live_snapshot(data, sum(expected.values()))
    assert by_verb_resource_code(snapshot) == expected
    assert counted(snapshot) == counted(alone)


def test_elasticsearch_documents_feed_the_analysis(tmp_path: Path) -> None:
    pytest.importorskip("elasticsearch", reason="needs the elasticsearch extra")
    from fake_es import FakeElasticsearch
    from test_sources_elasticsearch import filebeat_doc

    lines = traffic_lines()
    expected = truth(lines)
    alone = file_analysis(tmp_path, lines)
    fake = FakeElasticsearch().start()
    try:
        for line in lines:
            name, doc_id, source = filebeat_doc(orjson.loads(line))
            fake.documents[(name, doc_id)] = source
        data = load_config(DEFAULT_CONFIG_DIR)
        data["sinks"] = {}
        data["sources"] = {"elasticsearch": {"hosts": [fake.url], "index": "kube-audit-*",
                                             "lag_s": 0, "poll_s": 0.05, "page_size": 5000}}
        snapshot = live_snapshot(data, sum(expected.values()))
    finally:
        fake.stop()
    assert by_verb_resource_code(snapshot) == expected
    assert counted(snapshot) == counted(alone)


def test_a_followed_log_feeds_the_analysis_its_pod_lines_included(tmp_path: Path) -> None:
    """``--follow`` hands the lines it leaves for the pipeline to decode (final records
    about Pods) to the analysis too."""
    lines = traffic_lines()
    expected = truth(lines)
    assert any(resource.startswith("pods") for _, resource, _ in expected)
    alone = file_analysis(tmp_path, lines)
    data = load_config(DEFAULT_CONFIG_DIR)
    data["sinks"] = {}
    data["sources"] = {"follow": {"paths": [str(tmp_path / "audit.log")]}}
    snapshot = live_snapshot(data, sum(expected.values()))
    assert by_verb_resource_code(snapshot) == expected
    assert counted(snapshot) == counted(alone)
