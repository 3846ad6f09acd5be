"""lunettes' hand-written OTLP bytes equal what the official OpenTelemetry Python SDK sends.

The same spans are built as SDK ``ReadableSpan`` objects and encoded by the SDK's OTLP
exporter encoder (``opentelemetry-exporter-otlp-proto-common``); both requests are decoded
with the official proto classes and compared field by field: resource, scope, ids, names,
kinds, times, every attribute type, events, links, status and span flags. The one
documented difference: the SDK encoder (1.45) leaves a link's ``trace_state`` and its W3C
trace flags out of ``Link.flags``; lunettes writes both, as trace.proto defines them, and
the test checks those two fields on their own.
"""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="needs the test extra (opentelemetry-sdk)")

from api_server import SAMPLE, replay
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SDKEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link as SDKLink
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from lunettes import __version__
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.spans import ERROR, Trace, pod_trace
from lunettes.sinks.otlp_encode import SCOPE_NAME, OTLPEncoder

UID = "7b0b2f33-4c1e-4c2b-a2a6-6f4f1f7f9e10"
T0 = 1_767_225_600_000_000
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def sdk_spans(trace: Trace, service: str = "lunettes") -> list[ReadableSpan]:
    """``trace`` as the SDK's finished spans, with the resource and scope lunettes uses."""
    resource = Resource({"service.name": service, **dict(trace.pod_attributes)})
    scope = InstrumentationScope(SCOPE_NAME, __version__)
    tid = _int(trace.trace_id)
    out = []
    for span in trace.spans:
        parent = None
        if span.parent_span_id:
            parent = SpanContext(tid, _int(span.parent_span_id), is_remote=span.remote_parent)
        links = [SDKLink(SpanContext(_int(link.trace_id), _int(link.span_id), is_remote=True,
                                     trace_flags=TraceFlags(link.flags),
                                     trace_state=TraceState.from_header([link.trace_state])),
                         dict(link.attributes))
                 for link in span.links]
        status = (Status(StatusCode.ERROR, span.status_message) if span.status == ERROR
                  else Status(StatusCode.UNSET))
        out.append(ReadableSpan(
            name=span.name, context=SpanContext(tid, _int(span.span_id), is_remote=False),
            parent=parent, resource=resource, attributes=dict(trace.attributes_of(span)),
            events=[SDKEvent(e.name, dict(e.attributes), e.time_ns) for e in span.events],
            links=links, kind=SpanKind.INTERNAL, instrumentation_scope=scope, status=status,
            start_time=span.start_ns, end_time=span.end_ns))
    return out


def compare(trace: Trace) -> None:
    """lunettes' request for one Pod equals the SDK's, field by field."""
    ours = ExportTraceServiceRequest.FromString(OTLPEncoder().resource_spans(trace))
    theirs = ExportTraceServiceRequest.FromString(
        encode_spans(sdk_spans(trace)).SerializeToString())
    our_spans = ours.resource_spans[0].scope_spans[0].spans
    for span, model in zip(our_spans, trace.spans, strict=True):
        for link, linked in zip(span.links, model.links, strict=True):
            assert link.trace_state == linked.trace_state
            assert link.flags == 0x300 | linked.flags
            link.ClearField("trace_state")
            link.flags = 0x300
    assert ours == theirs


def record(**overrides: object) -> PodRecord:
    fields: dict = dict(
        uid=UID, namespace="shop", name="web-1", node="node-1", created_us=T0,
        finished_us=T0 + 9_000_000, outcome="failed", owner_kind="ReplicaSet",
        owner_name="web-5d8f", last_seen_us=T0 + 9_500_000, trace_context=CALLER + ";a=b",
        stages=[
            Stage("delivery", "platform", T0, T0 + 9_000_000),
            Stage("image_pull", "platform", T0 + 1_000_000, None, instance="nginx:1.25",
                  instance_kind="image", parent="delivery",
                  events=[SpanEvent(T0 + 2_000_000, "Failed", "pull failed",
                                    {"count": "3", "audit-id": "a-1"})]),
        ],
        results={
            "slo": {"result": "violated", "class": "standard", "deadline_s": 60.0,
                    "platform_s": 9.25, "user_s": 0, "delivered": False},
            "diagnosis": {"reason": "ImagePullBackOff", "stage": "image_pull",
                          "owner": "user", "message": "image nginx:1.25 not found",
                          "evidence": [{"time": "2026-01-01T00:00:03Z", "audit_id": "a-2",
                                        "source": "kubelet", "op": "status",
                                        "reason": "ErrImagePull", "message": "not found"}]},
        })
    fields.update(overrides)
    return PodRecord(**fields)


@pytest.mark.parametrize("link_as_parent", [False, True])
def test_every_attribute_type_event_link_and_status_match_the_sdk(link_as_parent: bool) -> None:
    trace = pod_trace(record(), link_as_parent=link_as_parent)
    assert trace is not None
    types = {type(v) for span in trace.spans for _, v in trace.attributes_of(span)}
    assert types == {str, bool, float, int}  # every attribute type is exercised
    assert any(span.events for span in trace.spans) and trace.spans[1].status == ERROR
    assert bool(trace.spans[0].links) is not link_as_parent
    compare(trace)


def test_every_record_of_the_sample_matches_the_sdk() -> None:
    traces = [t for r in replay([str(SAMPLE)]).values() if (t := pod_trace(r)) is not None]
    assert len(traces) > 250 and any(s.events for t in traces for s in t.spans)
    for trace in traces:
        compare(trace)
