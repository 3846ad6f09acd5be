"""The hand-written OTLP encoding decodes, with the official opentelemetry-proto classes,
to exactly the messages an independent reference builds with those classes.

Two references: ``expected_request`` maps pod records to messages by the rules of the
trace (the OTLP sink's contract, written out here once more without the neutral spans),
and ``official_request`` builds the messages of given :class:`Trace` objects, for traces
no pod record can produce (int and float attributes, empty names, extreme times).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.proto", reason="needs the otlp extra")

from api_server import SAMPLE, replay
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from lunettes import __version__
from lunettes.model import spans as model
from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.semconv import ERROR_OUTCOMES, OWNER_ATTRIBUTES
from lunettes.model.spans import Trace, pod_trace
from lunettes.model.times import parse_time
from lunettes.sinks.otlp_encode import OTLPEncoder

ROOT = Path(__file__).resolve().parents[1]
UID = "2f1c7a0e-8b5d-4c8e-9b1a-0d3e5f6a7b8c"
T0 = 1_700_000_000_000_000  # microseconds
MAX_US = (2**64 - 1) // 1000  # the last microsecond whose nanoseconds fit a fixed64
INSTANCE_KEYS = {"container": "k8s.container.name", "image": "container.image.name"}


# -- references ----------------------------------------------------------------------------

def kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def scope() -> InstrumentationScope:
    return InstrumentationScope(name="lunettes", version=__version__)


def expected_resource_spans(record: PodRecord, service: str = "lunettes"
                            ) -> ResourceSpans | None:
    """The OTLP sink's contract for one pod record, with the official classes."""
    stages = list(record.stages)
    roots = [s for s in stages if not s.parent]
    if roots:
        root = roots[0]
    else:
        starts = [s.start_us for s in stages]
        if record.created_us is not None:
            starts.append(record.created_us)
        if not starts and record.last_seen_us is not None:
            starts.append(record.last_seen_us)
        if not starts:
            return None
        end = record.finished_us
        if end is None:
            ends = [s.end_us for s in stages if s.end_us is not None]
            ends += [record.last_seen_us] if record.last_seen_us is not None else []
            end = max(ends, default=None)
        root = Stage("delivery", "platform", min(starts),
                     None if end is None else max(end, min(starts)))
        stages.insert(0, root)

    uid = record.uid
    first_of = {}
    for stage in reversed(stages):
        first_of[stage.name] = span_id(uid, stage.name, stage.instance)
    pod = [kv("k8s.namespace.name", record.namespace), kv("k8s.pod.name", record.name),
           kv("k8s.pod.uid", uid)] + ([kv("k8s.node.name", record.node)] if record.node else [])
    record_end = record.finished_us if record.finished_us is not None else record.last_seen_us
    spans = []
    for stage in stages:
        end = stage.end_us
        if end is None:
            end = record_end if record_end is not None else stage.start_us
        attributes = [*pod, kv("lunettes.stage.name", stage.name),
                      kv("lunettes.stage.owner", stage.effective_owner or stage.owner)]
        if stage.user_intervals:  # the SLO's user time inside the stage
            attributes.append(kv("lunettes.stage.user_time_s", round(
                sum(e - s for s, e in stage.user_intervals) / 1e6, 6)))
        if stage.instance:
            attributes.append(kv(INSTANCE_KEYS.get(stage.instance_kind,
                                                   "lunettes.stage.instance"), stage.instance))
        if stage.end_us is None:
            attributes.append(kv("lunettes.stage.open", True))
        span = Span(trace_id=trace_id(uid), span_id=span_id(uid, stage.name, stage.instance),
                    name=f"{stage.name} {stage.instance}" if stage.instance else stage.name,
                    kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=stage.start_us * 1000,
                    end_time_unix_nano=max(end, stage.start_us) * 1000, status=Status())
        if stage is root:
            attributes += [kv("lunettes.pod.outcome", record.outcome),
                           kv("lunettes.pod.partial", record.partial)]
            if record.uid_derived:
                attributes.append(kv("lunettes.pod.uid_derived", True))
            if record.owner_kind in OWNER_ATTRIBUTES and record.owner_name:
                attributes.append(kv(OWNER_ATTRIBUTES[record.owner_kind], record.owner_name))
            elif record.owner_kind or record.owner_name:
                attributes += [kv("lunettes.owner.kind", record.owner_kind),
                               kv("lunettes.owner.name", record.owner_name)]
            if record.outcome in ERROR_OUTCOMES:
                span.status.code = Status.STATUS_CODE_ERROR
                span.status.message = ERROR_OUTCOMES[record.outcome]
            attributes += root_results(record)
            caller = model.parse_traceparent(record.trace_context)
            if caller is not None:
                span.links.add(trace_id=caller.trace_id, span_id=caller.span_id,
                               trace_state=caller.trace_state, flags=0x300 | caller.flags)
        else:
            span.parent_span_id = first_of.get(stage.parent,
                                               span_id(uid, root.name, root.instance))
        span.attributes.extend(attributes)
        span.flags = 0x100
        for event in stage.events:
            extra = [("message", event.message)] if event.message else []
            span.events.add(time_unix_nano=event.time_us * 1000, name=event.name,
                            attributes=[kv(k, v) for k, v in
                                        [*event.attributes.items(), *extra]])
        spans.append(span)
    mark_cause(record, stages, spans)
    return ResourceSpans(resource=Resource(attributes=[kv("service.name", service), *pod]),
                         scope_spans=[ScopeSpans(scope=scope(), spans=spans)])


def root_results(record: PodRecord) -> list[KeyValue]:
    """The SLO's and the diagnosis' attributes of the root span."""
    out = []
    for result, keys in (("slo", ["result", "class", "deadline_s", "platform_s", "user_s"]),
                         ("diagnosis", ["reason", "owner", "stage"])):
        values = record.results.get(result) or {}
        for key in keys:
            if values.get(key) not in (None, ""):
                out.append(kv(f"lunettes.{result}.{key}", values[key]))
    return out


def mark_cause(record: PodRecord, stages: list[Stage], spans: list[Span]) -> None:
    """The diagnosis' evidence as events of the span of its stage (the instance its
    evidence names, else an open one, else the last; the root when none), error there when
    the Pod failed."""
    diagnosis = record.results.get("diagnosis") or {}
    if not diagnosis.get("reason"):
        return
    evidence = diagnosis.get("evidence") or []
    named = {e["container"] for e in evidence if e.get("container")}
    of_stage = [(st, sp) for st, sp in zip(stages, spans, strict=True)
                if st.name == diagnosis.get("stage")]
    picks = ([p for p in of_stage if p[0].instance in named and p[0].instance]
             or [p for p in of_stage if p[0].end_us is None] or of_stage[-1:])
    span = picks[0][1] if picks else spans[0]
    known = {a.value.string_value: e for e in span.events for a in e.attributes
             if a.key == "audit-id"}
    for item in evidence:
        if item.get("audit_id") in known:
            mark = kv("lunettes.evidence", True)
            if mark not in known[item["audit_id"]].attributes:
                known[item["audit_id"]].attributes.append(mark)
            continue
        if item.get("time") == "bad":
            continue
        attributes = [kv("lunettes.evidence", True)]
        for key, name in (("audit_id", "audit-id"), ("source", "lunettes.source"),
                          ("op", "lunettes.op"), ("container", "k8s.container.name"),
                          ("message", "message")):
            if item.get(key):
                attributes.append(kv(name, item[key]))
        span.events.add(time_unix_nano=parse_time(item["time"]) * 1000,
                        name=item.get("reason") or item.get("op") or "evidence",
                        attributes=attributes)
    span.events.sort(key=lambda e: e.time_unix_nano)
    if span is not spans[0] and record.outcome in ERROR_OUTCOMES:
        message = diagnosis.get("message")
        span.status.code = Status.STATUS_CODE_ERROR
        span.status.message = (f"{diagnosis['reason']}: {message}" if message
                               else diagnosis["reason"])


def official_request(traces: list[Trace], service: str = "lunettes"
                     ) -> ExportTraceServiceRequest:
    """The messages of ``traces``, built with the official classes."""
    request = ExportTraceServiceRequest()
    for trace in traces:
        pod = [kv(k, v) for k, v in trace.pod_attributes]
        spans = []
        for s in trace.spans:
            status = Status()
            if s.status == model.ERROR:
                status = Status(code=Status.STATUS_CODE_ERROR, message=s.status_message)
            spans.append(Span(
                trace_id=trace.trace_id, span_id=s.span_id, parent_span_id=s.parent_span_id,
                name=s.name, kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=s.start_ns,
                end_time_unix_nano=s.end_ns, status=status,
                attributes=[*pod, *(kv(k, v) for k, v in s.attributes)],
                events=[Span.Event(time_unix_nano=e.time_ns, name=e.name,
                                   attributes=[kv(k, v) for k, v in e.attributes])
                        for e in s.events],
                links=[Span.Link(trace_id=link.trace_id, span_id=link.span_id,
                                 trace_state=link.trace_state,
                                 attributes=[kv(k, v) for k, v in link.attributes],
                                 flags=0x300 | link.flags) for link in s.links],
                flags=0x300 if s.remote_parent else 0x100))
        request.resource_spans.append(ResourceSpans(
            resource=Resource(attributes=[kv("service.name", service), *pod]),
            scope_spans=[ScopeSpans(scope=scope(), spans=spans)]))
    return request


def decode(encoder: OTLPEncoder, records: list[PodRecord]) -> ExportTraceServiceRequest:
    traces = [t for t in map(pod_trace, records) if t is not None]
    return ExportTraceServiceRequest.FromString(b"".join(map(encoder.resource_spans, traces)))


def expected_request(records: list[PodRecord], service: str = "lunettes"
                     ) -> ExportTraceServiceRequest:
    found = [expected_resource_spans(r, service) for r in records]
    return ExportTraceServiceRequest(resource_spans=[rs for rs in found if rs is not None])


# -- pod records ----------------------------------------------------------------------------

def pod(uid: str = UID, **overrides: Any) -> PodRecord:
    fields: dict[str, Any] = dict(
        uid=uid, namespace="shop", name="web-7d9f-abc", node="node-1", created_us=T0,
        finished_us=T0 + 5_000_000, outcome="delivered", owner_kind="ReplicaSet",
        owner_name="web-7d9f", last_seen_us=T0 + 6_000_000,
        stages=[
            Stage("delivery", "platform", T0, T0 + 5_000_000),
            Stage("scheduling", "platform", T0 + 100, T0 + 1_000_000, parent="delivery"),
            Stage("image_pull", "platform", T0 + 1_000_000, T0 + 3_000_000,
                  instance="nginx:1.25", instance_kind="image", parent="delivery",
                  events=[SpanEvent(T0 + 1_500_000, "BackOff", "Back-off pulling image",
                                    {"count": "2", "k8s.container.name": "web"})]),
            Stage("container_start", "user", T0 + 3_000_000, None, instance="web",
                  instance_kind="container", parent="delivery"),
        ])
    fields.update(overrides)
    return PodRecord(**fields)


VARIETY = {
    "delivered": pod(),
    "synthetic root from stages": pod(stages=[
        Stage("scheduling", "platform", T0 + 10, None, parent="delivery"),
        Stage("sandbox", "platform", T0 + 20, T0 + 30, parent="scheduling")],
        created_us=None, finished_us=None),
    "synthetic root, no stages": pod(uid="not-a-uuid", stages=[], node="", finished_us=None,
                                     outcome="rejected", owner_kind="", owner_name=""),
    "synthetic root, last sighting only": pod(stages=[], created_us=None, finished_us=None),
    "no time at all": pod(stages=[], created_us=None, finished_us=None, last_seen_us=None),
    "open stages end at the last sighting": pod(finished_us=None, outcome="in_progress"),
    "open stages end at their start": pod(finished_us=None, last_seen_us=None,
                                          outcome="in_progress"),
    "end before start": pod(finished_us=T0 - 10, last_seen_us=None),
    **{f"error {o}": pod(outcome=o, partial=True, uid_derived=True) for o in ERROR_OUTCOMES},
    **{f"owner {k}": pod(owner_kind=k) for k in OWNER_ATTRIBUTES},
    "owner without convention": pod(owner_kind="Workflow", owner_name="etl-1"),
    "owner kind only": pod(owner_kind="ReplicaSet", owner_name=""),
    "owner name only": pod(owner_kind="", owner_name="orphan"),
    "other instance kind": pod(stages=[
        Stage("delivery", "platform", T0, T0 + 9),
        Stage("volume_mount", "platform", T0, T0 + 5, instance="data", instance_kind="pvc",
              parent="delivery"),
        Stage("per_thing", "user", T0, T0 + 5, instance="x", parent="delivery")]),
    "missing parent hangs under the root": pod(stages=[
        Stage("delivery", "platform", T0, T0 + 9),
        Stage("orphan", "platform", T0, T0 + 1, parent="no-such-stage"),
        Stage("child", "platform", T0 + 1, T0 + 2, parent="orphan")]),
    "root not first": pod(stages=[
        Stage("scheduling", "platform", T0 + 1, T0 + 2, parent="delivery"),
        Stage("delivery", "platform", T0, T0 + 9),
        Stage("delivery", "platform", T0, T0 + 9, instance="again")]),
    "unicode and empty strings": pod(
        namespace="", name="pöd-✓-日本", node="", owner_kind="", owner_name="",
        outcome="", stages=[
            Stage("délivery ✓", "", T0, T0 + 1),
            Stage("", "", T0, T0 + 1, instance="", parent="délivery ✓", events=[
                SpanEvent(T0, "", "", {}), SpanEvent(T0, "Ünhealthy", "😀 probe failed",
                                                     {"": "", "ключ": "значение"})])]),
    "long strings": pod(name="p" * 300, stages=[
        Stage("delivery", "platform", T0, T0 + 1, events=[
            SpanEvent(T0, "Warn", "m" * 20_000, {"k" * 200: "v" * 5_000})])]),
    "failed, with SLO, diagnosis and a caller": pod(
        outcome="failed", finished_us=None, trace_context="00-" + "ab" * 16 + "-" + "cd" * 8
        + "-01;vendor=x", results={
            "slo": {"result": "violated", "class": "standard", "deadline_s": 60.0,
                    "platform_s": 75.5, "user_s": 0.0, "delivered": False},
            "diagnosis": {"reason": "ImagePullBackOff", "stage": "container_start",
                          "owner": "user", "message": "", "evidence": [
                              {"time": "2023-11-14T22:13:21Z", "source": "kubelet",
                               "audit_id": "a-1", "op": "event", "reason": "Failed",
                               "message": "pull failed", "container": "web"},
                              {"time": "bad", "audit_id": "a-2"}]}}),
    "diagnosis of a stage the trace lacks": pod(results={
        "diagnosis": {"reason": "AdmissionDenied", "stage": "admission", "owner": "user",
                      "evidence": [{"time": "2023-11-14T22:13:20.5Z", "op": "create"}]}}),
    "malformed caller": pod(trace_context="00-" + "0" * 32 + "-" + "cd" * 8 + "-01"),
    "times at both ends": pod(created_us=0, finished_us=MAX_US, last_seen_us=None, stages=[
        Stage("delivery", "platform", 0, MAX_US),
        Stage("scheduling", "platform", 0, 0, parent="delivery",
              events=[SpanEvent(0, "Zero", "")]),
        Stage("late", "platform", MAX_US, None, parent="delivery",
              events=[SpanEvent(MAX_US, "Late", "")])]),
}


@pytest.mark.parametrize("name", list(VARIETY))
def test_each_record_decodes_to_the_expected_messages(name: str) -> None:
    record = VARIETY[name]
    assert decode(OTLPEncoder(), [record]) == expected_request([record])


def test_records_share_one_request_and_a_service_name() -> None:
    records = list(VARIETY.values())
    encoder = OTLPEncoder("my-service", cache_size=3)  # a tiny cache starts over often
    for _ in range(2):
        got = decode(encoder, records)
        assert got == expected_request(records, "my-service")
    assert len(got.resource_spans) == len(records) - 1  # "no time at all" has no trace


def test_every_record_of_the_sample_decodes_to_the_expected_messages() -> None:
    records = list(replay([str(SAMPLE)]).values())
    assert len(records) > 250 and any(s.events for r in records for s in r.stages)
    for start in range(0, len(records), 100):
        chunk = records[start:start + 100]
        assert decode(OTLPEncoder(), chunk) == expected_request(chunk)


# -- property tests ---------------------------------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(["", "delivery", "web", "ünïcødé ✓", "x" * 200])
times_us = st.integers(min_value=0, max_value=MAX_US)
events = st.builds(SpanEvent, time_us=times_us, name=texts, message=texts,
                   attributes=st.dictionaries(texts, texts, max_size=3))
stage_names = st.sampled_from(["delivery", "scheduling", "image_pull", "x", ""])


@st.composite
def stages(draw: st.DrawFn) -> Stage:
    start = draw(times_us)
    end = draw(st.none() | st.integers(min_value=0, max_value=MAX_US))
    return Stage(name=draw(stage_names), owner=draw(st.sampled_from(["platform", "user", ""])),
                 start_us=start, end_us=end, instance=draw(st.sampled_from(["", "web", "ü:1"])),
                 instance_kind=draw(st.sampled_from(["", "container", "image", "pvc"])),
                 parent=draw(st.sampled_from(["", "delivery", "scheduling", "nowhere"])),
                 events=draw(st.lists(events, max_size=2)))


records = st.builds(
    PodRecord,
    uid=st.sampled_from([UID, str(uuid.UUID(int=0)), "not-a-uuid", ""]) | texts,
    namespace=texts, name=texts, node=texts,
    created_us=st.none() | times_us, finished_us=st.none() | times_us,
    outcome=st.sampled_from(["delivered", "in_progress", *ERROR_OUTCOMES]) | texts,
    partial=st.booleans(), uid_derived=st.booleans(),
    owner_kind=st.sampled_from(["", "Workflow", *OWNER_ATTRIBUTES]), owner_name=texts,
    last_seen_us=st.none() | times_us, stages=st.lists(stages(), max_size=5),
)

SHARED = OTLPEncoder(cache_size=16)  # carries its cache from example to example


@settings(max_examples=300, deadline=None)
@given(st.lists(records, min_size=1, max_size=3))
def test_random_records_decode_to_the_expected_messages(pods: list[PodRecord]) -> None:
    assert decode(SHARED, pods) == expected_request(pods)


values = (st.text(max_size=8) | st.booleans() | st.floats(allow_nan=False)
          | st.integers(min_value=-(2**63), max_value=2**63 - 1))
attributes = st.lists(st.tuples(st.text(max_size=8), values), max_size=4)
ids = st.binary(min_size=0, max_size=20)
times_ns = st.integers(min_value=0, max_value=2**64 - 1)
trace_events = st.builds(model.Event, time_ns=times_ns, name=st.text(max_size=8),
                         attributes=attributes)
links = st.builds(model.Link, trace_id=ids, span_id=ids, trace_state=st.text(max_size=8),
                  flags=st.integers(min_value=0, max_value=255), attributes=attributes)
trace_spans = st.builds(
    model.Span, span_id=ids, parent_span_id=ids, name=st.text(max_size=8),
    stage=st.just(""), instance=st.just(""), owner=st.just(""), start_ns=times_ns,
    end_ns=times_ns, open=st.booleans(), attributes=attributes,
    status=st.sampled_from([model.UNSET, model.ERROR]), status_message=st.text(max_size=8),
    events=st.lists(trace_events, max_size=2), links=st.lists(links, max_size=2),
    remote_parent=st.booleans())
traces = st.builds(Trace, trace_id=ids, pod_attributes=attributes,
                   spans=st.lists(trace_spans, max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(traces, max_size=3))
def test_random_traces_decode_to_the_official_messages(got: list[Trace]) -> None:
    """Any attribute value (bool, int64 incl. negative, double, str), any id length,
    empty strings, times up to 2**64 - 1 ns."""
    body = b"".join(SHARED.resource_spans(t) for t in got)
    assert ExportTraceServiceRequest.FromString(body) == official_request(got)


def test_equal_values_of_different_types_stay_apart() -> None:
    """1, 1.0 and True are equal (and hash alike) in Python: the cache must not mix them."""
    span = model.Span(b"\x01" * 8, b"", "s", "s", "", "", 1, 2, False,
                      [("v", True), ("v", 1), ("v", 1.0), ("v", "1"), ("v", -1)])
    trace = Trace(b"\x02" * 16, [], [span])
    encoder = OTLPEncoder()
    for _ in range(2):
        decoded = ExportTraceServiceRequest.FromString(encoder.resource_spans(trace))
        assert decoded == official_request([trace])
        values = decoded.resource_spans[0].scope_spans[0].spans[0].attributes
        assert [v.value.WhichOneof("value") for v in values] == [
            "bool_value", "int_value", "double_value", "string_value", "int_value"]


@pytest.mark.parametrize(("start_ns", "event_ns", "value", "error"), [
    (1, 1, 2**63, "outside the int64 range"),
    (1, 1, -(2**63) - 1, "outside the int64 range"),
    (-1, 1, 1, "span 's': a time outside"),
    (2**64, 1, 1, "span 's': a time outside"),
    (1, -1, 1, "event 'e': a time outside"),
])
def test_values_protobuf_cannot_hold_are_refused(start_ns: int, event_ns: int, value: int,
                                                 error: str) -> None:
    span = model.Span(b"\x01" * 8, b"", "s", "s", "", "", start_ns, 2, False, [("v", value)],
                      events=[model.Event(event_ns, "e", [])])
    with pytest.raises(ValueError, match=error):
        OTLPEncoder().resource_spans(Trace(b"\x02" * 16, [], [span]))


def test_benchmark_script_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "otlp_encode.py"),
                           "--repeat", "1"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "µs per Pod" in done.stdout and "spans/s" in done.stdout
