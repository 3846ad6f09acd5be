"""The API's trace view: a stored record gives the trace of the record it was stored from."""

from __future__ import annotations

import orjson
import pytest
from api_server import SAMPLE, replay

from lunettes.api.trace import record_of, trace_of
from lunettes.model.ids import trace_id
from lunettes.model.record import PodRecord
from lunettes.model.spans import pod_trace
from lunettes.model.times import format_time


@pytest.fixture(scope="module")
def records() -> list[PodRecord]:
    return list(replay([str(SAMPLE)]).values())


def test_stored_records_give_the_traces_of_the_records(records: list[PodRecord]) -> None:
    with_events = 0
    for record in records:
        stored = orjson.loads(orjson.dumps(record.to_dict()))
        assert pod_trace(record_of(stored)) == pod_trace(record), record.uid
        with_events += any(s.events for s in record.stages)
    assert with_events > 10


def test_span_view(records: list[PodRecord]) -> None:
    record = next(r for r in records if any(s.events for s in r.stages))
    view = trace_of(orjson.loads(orjson.dumps(record.to_dict())), "http://jaeger:16686/")
    trace = pod_trace(record)
    assert trace is not None
    assert view["trace_id"] == trace.trace_id.hex()
    assert view["jaeger_url"] == f"http://jaeger:16686/trace/{trace.trace_id.hex()}"
    for got, span in zip(view["spans"], trace.spans, strict=True):
        assert got["parent_span_id"] == (span.parent_span_id.hex() or None)
        assert got["attributes"] == dict(trace.attributes_of(span))
        assert got["start"] == format_time(span.start_ns // 1000)
        assert got["duration_s"] == (span.end_ns // 1000 - span.start_ns // 1000) / 1e6
        assert got["events"] == [
            {"name": e.name, "time": format_time(e.time_ns // 1000),
             "time_unix_nano": e.time_ns, "attributes": dict(e.attributes)}
            for e in span.events]
    assert any(got["events"] for got in view["spans"])


def test_no_time_no_spans() -> None:
    assert trace_of({"uid": "u", "stages": []}) == {
        "trace_id": trace_id("u").hex(), "jaeger_url": None, "spans": []}


def test_span_view_shows_the_callers_link_and_the_root_results(records: list[PodRecord]) -> None:
    record = next(r for r in records if r.results.get("diagnosis", {}).get("reason"))
    record.trace_context = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    stored = orjson.loads(orjson.dumps(record.to_dict()))
    assert stored["trace_context"] == record.trace_context
    root = trace_of(stored)["spans"][0]
    assert root["links"] == [{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                              "span_id": "00f067aa0ba902b7", "trace_state": ""}]
    assert root["attributes"]["lunettes.diagnosis.reason"] == record.results["diagnosis"][
        "reason"]
    assert root["attributes"]["lunettes.slo.result"] == record.results["slo"]["result"]
