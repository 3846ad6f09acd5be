"""The load analysis' typed reading of a line (msgspec) reads what a plain json.loads
reads, on the real captures and on lines made to trip it; what msgspec refuses goes to the
decoder."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import pytest

from lunettes.apiserver.reader import read_facts
from lunettes.apiserver.scan import (
    NOT_FINAL,
    UNREADABLE,
    RequestFacts,
    go_duration_us,
    scan,
)
from lunettes.apiserver.stream import RequestStream
from lunettes.sources.errors import BadRecords
from tests.realdata import real

CAPTURES = ("perfspec-kubeadm-metadata.jsonl.gz", "openshift-4.12-requestresponse.jsonl",
            "openshift-4.12-small.jsonl", "audit2rbac-demo-metadata.jsonl")


def _us(text: str) -> int:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(stamp.timestamp()) * 1_000_000 + stamp.microsecond


def oracle(event: dict) -> tuple | None:
    """What the line says, read with the standard library only."""
    if event["stage"] not in ("ResponseComplete", "Panic"):
        return None
    ref = event.get("objectRef", {})
    sub = ref.get("subresource", "")
    latency = None
    if "stageTimestamp" in event and event["verb"] != "watch" and sub not in (
            "exec", "attach", "portforward", "proxy"):
        latency = _us(event["stageTimestamp"]) - _us(event["requestReceivedTimestamp"])
    return (_us(event["requestReceivedTimestamp"]), event["verb"], event["requestURI"],
            event["user"].get("username", ""), event.get("userAgent", ""),
            ref.get("resource", ""), sub, ref.get("namespace", ""), ref.get("name", ""),
            event.get("responseStatus", {}).get("code", 0), latency)


def _lines(path: str) -> list[bytes]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as stream:
        return stream.readlines()


@pytest.mark.parametrize("name", CAPTURES)
def test_scan_reads_what_json_reads_on_real_captures(name: str) -> None:
    read = unreadable = 0
    for raw in _lines(real(name)):
        facts = scan(raw)
        if facts is UNREADABLE:
            unreadable += 1
            continue
        expected = oracle(json.loads(raw))
        if expected is None:
            assert facts is NOT_FINAL
            continue
        assert isinstance(facts, RequestFacts)
        assert tuple(facts)[:11] == expected, raw[:300]
        read += 1
    if name.startswith(("perfspec", "openshift")):  # kube-apiserver's own field order:
        assert read > 0 and unreadable == 0  # every line is read by the fast path


LINE = ('{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a",'
        '"stage":"ResponseComplete","requestURI":"/api/v1/pods?limit=500\\u0026watch=false",'
        '"verb":"list","user":{"username":"u","groups":["g"]},"sourceIPs":["1.2.3.4"],'
        '"userAgent":"UA","objectRef":{"resource":"pods","apiVersion":"v1"},'
        '"responseStatus":{"metadata":{},"code":200}BODY,'
        '"requestReceivedTimestamp":"2026-01-02T03:04:05.100000Z",'
        '"stageTimestamp":"2026-01-02T03:04:05.350000Z"ANNOT}\n')


def _line(ua: str = "k/1", body: str = "", annotations: str = "") -> bytes:
    return (LINE.replace("UA", ua).replace("BODY", body)
            .replace("ANNOT", annotations)).encode()


def test_scan_is_not_fooled_by_bodies_and_escapes() -> None:
    body = (',"responseObject":{"kind":"Status","code":500,"metadata":{"annotations":'
            '{"apiserver.latency.k8s.io/apf-queue-wait":"9s"}},'
            '"userAgent":"fake","objectRef":{"resource":"fake"}}')
    raw = _line(ua='say \\"hi\\" \\u0026 go', body=body,
                annotations=',"annotations":{"apiserver.latency.k8s.io/apf-queue-wait":'
                            '"1.5ms"}')
    facts = scan(raw)
    assert isinstance(facts, RequestFacts)
    event = json.loads(raw)
    assert tuple(facts)[:11] == oracle(event)
    assert facts.user_agent == 'say "hi" & go'
    assert facts.uri == "/api/v1/pods?limit=500&watch=false"
    assert (facts.code, facts.latency_us, facts.apf_wait_us) == (200, 250_000, 1500)
    assert scan(_line(body=body)).apf_wait_us is None  # type: ignore[union-attr]


def test_scan_leaves_what_it_cannot_tell_to_the_decoder() -> None:
    assert scan(_line()[:-2]) is UNREADABLE  # not one whole object
    assert scan(_line().replace(b"audit.k8s.io/v1", b"audit.k8s.io/v1beta1")) is UNREADABLE
    assert scan(_line().replace(b',"requestReceivedTimestamp"', b',"received"')) is UNREADABLE
    assert scan(_line().replace(b"ResponseComplete", b"ResponseStarted")) is NOT_FINAL
    for odd in (_line().replace(b'"code":200}', b'"reason":"x"}'),  # no code
                _line().replace(b'"pods"', b'"p\\u006fds"')):  # an escape in a value
        facts = scan(odd)
        assert isinstance(facts, RequestFacts)
        assert tuple(facts)[:11] == oracle(json.loads(odd))


def test_fields_of_another_type_read_as_absent_through_the_decoder(tmp_path: Path) -> None:
    """msgspec refuses a field of another type; the decoder then reads it as absent, as it
    reads every line msgspec cannot."""
    odd = [_line().replace(b'"userAgent":"k/1"', b'"userAgent":5'),
           _line().replace(b'"code":200', b'"code":"200"'),
           _line(annotations=',"annotations":["apiserver.latency.k8s.io/apf-queue-wait"]'),
           _line(annotations=',"annotations":{"apiserver.latency.k8s.io/apf-queue-wait":7}')]
    assert [scan(raw) is UNREADABLE for raw in odd] == [True, True, True, False]
    log = tmp_path / "odd.log"
    log.write_bytes(b"".join(odd))
    facts = list(read_facts([str(log)], BadRecords()))
    assert [(f.user_agent, f.code, f.apf_wait_us) for f in facts] == [
        ("", 200, None), ("k/1", 0, None), ("k/1", 200, None), ("k/1", 200, None)]
    assert scan(odd[3]) == facts[3]  # a wait that is not a text: none, on either path


def test_go_durations() -> None:
    assert go_duration_us("100ns") == 0
    assert go_duration_us("1.5ms") == 1500
    assert go_duration_us("2m3.5s") == 123_500_000
    assert go_duration_us("3µs") == 3
    assert go_duration_us("fast") is None
    assert go_duration_us("1x") is None


def test_reader_decodes_other_shapes_and_counts_bad_lines(tmp_path: Path) -> None:
    event = json.loads(_line())
    v1beta1 = {**event, "apiVersion": "audit.k8s.io/v1beta1", "verb": "watch"}
    started = {**event, "stage": "ResponseStarted"}
    log = tmp_path / "mixed.log"
    log.write_text("\n".join([
        json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                    "items": [started, {**event, "verb": "create"}]}),
        "2026-01-02T03:04:05.000Z " + json.dumps(v1beta1),  # a CloudWatch export to S3
        "{not json",
        _line().decode().strip(),
    ]) + "\n")
    bad = BadRecords()
    facts = list(read_facts([str(log)], bad))
    assert [f.verb for f in facts] == ["create", "watch", "list"]
    assert facts[1].latency_us is None  # a watch has no latency
    assert bad.counts == {"invalid_json": 1}
    assert bad.samples["invalid_json"][0].startswith(f"{log}:3")


def _json_facts(raw: bytes) -> RequestFacts | None:
    """One line's request, read with the standard library only (:func:`oracle`), with the
    APF queue wait the line's annotation gives."""
    event = json.loads(raw)
    read = oracle(event)
    if read is None:
        return None
    wait = event.get("annotations", {}).get("apiserver.latency.k8s.io/apf-queue-wait")
    return RequestFacts(*read, go_duration_us(wait) if wait else None)


def counted(stream: RequestStream) -> dict[str, object]:
    """Everything a stream counted: each interval's counts (the series'), the tables, the
    Prometheus counts (by interval, not as a series: the GKE captures span years)."""
    stream.finish()
    tables = stream.tables
    counts = stream.counts
    intervals = stream.builder._intervals
    return {
        "joint": {i: dict(item.joint) for i, item in intervals.items()},
        "marginals": {i: [dict(m) for m in item.marginals or []]
                      for i, item in intervals.items()},
        "slow": {k: (h.count, h.total_us, dict(h.buckets)) for k, h in tables.slow.items()},
        "rejected": dict(tables.rejected), "controllers": dict(tables.controllers),
        "unbounded": dict(tables.unbounded),
        "queue_wait": {k: (h.count, h.total_us) for k, h in tables.queue_wait.items()},
        "requests": dict(counts.requests), "latency": dict(counts.latency),
        "metric_unbounded": dict(counts.unbounded), "n": stream.requests}


@pytest.mark.parametrize("name", ["simulated", *CAPTURES])
def test_stream_of_lines_counts_what_json_reads(name: str) -> None:
    """The stream's fast path (lines read from their bytes, gathered per interval, requests
    differing only in names and query values counted together) counts what feeding it
    each line's request as json.loads reads it counts."""
    if name == "simulated":
        from lunettes.simulate.apiserver_traffic import generate

        lines = list(generate(3, intervals=90, nodes=4).lines())
    else:
        lines = _lines(real(name))
    fast, plain = RequestStream(), RequestStream()
    untimed = 0  # final records without a requestReceivedTimestamp (audit2rbac's, 2017)
    for raw in lines:
        fast.add_line(raw)
        event = json.loads(raw)
        if "requestReceivedTimestamp" not in event:
            untimed += event["stage"] in ("ResponseComplete", "Panic")
            continue
        facts = _json_facts(raw)
        if facts is not None:
            plain.add(facts)
    assert counted(fast) == counted(plain)
    assert fast.requests == plain.requests
    assert fast.requests > 0 or untimed > 0
    assert fast.bad.counts == ({"bad_timestamp": untimed} if untimed else {})
