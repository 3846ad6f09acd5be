"""The neutral span builder: a pod record's trace as plain spans (no protobuf)."""

from __future__ import annotations

from typing import Any

import pytest

from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.spans import ERROR, UNSET, Event, parse_traceparent, pod_trace

UID = "2f1c7a0e-8b5d-4c8e-9b1a-0d3e5f6a7b8c"
T0 = 1_700_000_000_000_000


def pod(**overrides: Any) -> PodRecord:
    fields: dict[str, Any] = dict(
        uid=UID, namespace="shop", name="web-1", node="node-1", created_us=T0,
        finished_us=T0 + 50, outcome="delivered", owner_kind="Job", owner_name="nightly",
        last_seen_us=T0 + 60,
        stages=[Stage("delivery", "platform", T0, T0 + 50),
                Stage("image_pull", "platform", T0 + 10, T0 + 20, instance="nginx",
                      instance_kind="image", parent="delivery",
                      events=[SpanEvent(T0 + 15, "BackOff", "Back-off", {"count": "2"})]),
                Stage("container_start", "user", T0 + 20, None, instance="web",
                      instance_kind="container", parent="delivery")])
    fields.update(overrides)
    return PodRecord(**fields)


def test_spans_of_a_pod() -> None:
    trace = pod_trace(pod())
    assert trace is not None
    assert trace.trace_id == trace_id(UID)
    assert trace.pod_attributes == [("k8s.namespace.name", "shop"), ("k8s.pod.name", "web-1"),
                                    ("k8s.pod.uid", UID), ("k8s.node.name", "node-1")]
    root, pull, start = trace.spans
    assert (root.name, root.span_id, root.parent_span_id) == (
        "delivery", span_id(UID, "delivery"), b"")
    assert root.attributes == [
        ("lunettes.stage.name", "delivery"), ("lunettes.stage.owner", "platform"),
        ("lunettes.pod.outcome", "delivered"), ("lunettes.pod.partial", False),
        ("k8s.job.name", "nightly")]
    assert (root.status, root.status_message) == (UNSET, "")
    assert (pull.name, pull.parent_span_id, pull.start_ns, pull.end_ns, pull.open) == (
        "image_pull nginx", root.span_id, (T0 + 10) * 1000, (T0 + 20) * 1000, False)
    assert ("container.image.name", "nginx") in pull.attributes
    assert pull.events == [Event((T0 + 15) * 1000, "BackOff",
                                 [("count", "2"), ("message", "Back-off")])]
    assert (start.end_ns, start.open) == ((T0 + 50) * 1000, True)
    assert start.attributes[-2:] == [("k8s.container.name", "web"),
                                     ("lunettes.stage.open", True)]
    assert trace.attributes_of(start)[:4] == trace.pod_attributes


def test_errors_flags_and_owners_without_a_convention_on_the_root() -> None:
    trace = pod_trace(pod(outcome="failed", partial=True, uid_derived=True,
                          owner_kind="Workflow", owner_name="etl"))
    assert trace is not None
    root = trace.spans[0]
    assert (root.status, root.status_message) == (ERROR, "pod failed (phase Failed)")
    assert root.attributes[2:] == [
        ("lunettes.pod.outcome", "failed"), ("lunettes.pod.partial", True),
        ("lunettes.pod.uid_derived", True), ("lunettes.owner.kind", "Workflow"),
        ("lunettes.owner.name", "etl")]
    assert all(s.status == UNSET for s in trace.spans[1:])


def test_synthetic_root_or_no_trace() -> None:
    bare = pod_trace(pod(stages=[], finished_us=None, node=""))
    assert bare is not None
    (root,) = bare.spans
    assert (root.name, root.owner, root.start_ns, root.end_ns) == (
        "delivery", "platform", T0 * 1000, (T0 + 60) * 1000)
    assert ("k8s.node.name", "node-1") not in bare.pod_attributes
    assert pod_trace(pod(stages=[], created_us=None, finished_us=None,
                         last_seen_us=None)) is None


def test_missing_parents_hang_under_the_root_and_no_span_ends_before_it_starts() -> None:
    trace = pod_trace(pod(finished_us=T0 - 5, stages=[
        Stage("delivery", "platform", T0, None),
        Stage("orphan", "platform", T0 + 1, T0 + 2, parent="gone"),
        Stage("child", "platform", T0 + 1, T0 + 2, parent="orphan")]))
    assert trace is not None
    root, orphan, child = trace.spans
    assert orphan.parent_span_id == root.span_id
    assert child.parent_span_id == orphan.span_id
    assert root.end_ns == root.start_ns


CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
FAILED_PULL = {
    "slo": {"result": "violated", "class": "standard", "deadline_s": 60.0,
            "platform_s": 75.5, "user_s": 1.25, "delivered": False, "why": "not applicable"},
    "diagnosis": {"reason": "ImagePullBackOff", "stage": "image_pull", "owner": "user",
                  "message": "image nginx not found", "evidence": [
                      {"time": "2023-11-14T22:13:20.000020Z", "audit_id": "id-pull",
                       "source": "kubelet", "op": "status", "reason": "ErrImagePull",
                       "message": "not found", "container": "web"}]},
}


def test_root_carries_the_slo_and_the_diagnosis_for_tag_search() -> None:
    trace = pod_trace(pod(outcome="failed", results=FAILED_PULL))
    assert trace is not None
    attributes = dict(trace.spans[0].attributes)
    assert {k: v for k, v in attributes.items() if k.startswith(("lunettes.slo",
                                                                "lunettes.diagnosis"))} == {
        "lunettes.slo.result": "violated", "lunettes.slo.class": "standard",
        "lunettes.slo.deadline_s": 60.0, "lunettes.slo.platform_s": 75.5,
        "lunettes.slo.user_s": 1.25, "lunettes.diagnosis.reason": "ImagePullBackOff",
        "lunettes.diagnosis.owner": "user", "lunettes.diagnosis.stage": "image_pull"}


def test_the_failed_stage_is_an_error_with_its_evidence_as_events_with_audit_ids() -> None:
    trace = pod_trace(pod(outcome="failed", results=FAILED_PULL))
    assert trace is not None
    _root, pull, start = trace.spans
    assert (pull.status, pull.status_message) == (ERROR, "ImagePullBackOff: image nginx "
                                                          "not found")
    assert start.status == UNSET
    assert [e.name for e in pull.events] == ["BackOff", "ErrImagePull"]  # in time order
    assert ("audit-id", "id-pull") in pull.events[1].attributes
    assert ("k8s.container.name", "web") in pull.events[1].attributes


def test_a_delivered_pod_keeps_its_stages_unset_but_shows_the_evidence() -> None:
    slow = {"diagnosis": {"reason": "ImagePullSlow", "stage": "image_pull", "owner": "platform",
                          "evidence": [{"time": "2023-11-14T22:13:20Z", "audit_id": "x"}]}}
    trace = pod_trace(pod(results=slow))
    assert trace is not None
    assert all(s.status == UNSET for s in trace.spans)
    assert [e.name for e in trace.spans[1].events] == ["evidence", "BackOff"]


def test_warning_events_from_the_stages_analyzer_carry_the_audit_id() -> None:
    from lunettes.analyzers.stages import _attach_warnings
    from lunettes.model.hyperevent import HyperEvent

    stages = [Stage("delivery", "platform", T0, T0 + 50)]
    _attach_warnings(stages, [HyperEvent(T0 + 1, 0, "event", UID, audit_id="aid-7",
                                         reason="BackOff", event_type="Warning", count=1)])
    assert stages[0].events[0].attributes["audit-id"] == "aid-7"


def test_a_caller_trace_context_is_a_link_or_the_parent() -> None:
    context = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01;congo=t61rcWkgMzE"
    linked = pod_trace(pod(trace_context=context))
    assert linked is not None and linked.trace_id == trace_id(UID)
    (link,) = linked.spans[0].links
    assert (link.trace_id.hex(), link.span_id.hex(), link.trace_state, link.flags) == (
        CALLER_TRACE, CALLER_SPAN, "congo=t61rcWkgMzE", 1)
    child = pod_trace(pod(trace_context=context), link_as_parent=True)
    assert child is not None and child.trace_id.hex() == CALLER_TRACE
    assert (child.spans[0].parent_span_id.hex(), child.spans[0].remote_parent) == (
        CALLER_SPAN, True)
    assert not child.spans[0].links and child.spans[1].parent_span_id == child.spans[0].span_id


@pytest.mark.parametrize("value", [
    "", "garbage", f"00-{'0' * 32}-{CALLER_SPAN}-01", f"00-{CALLER_TRACE}-{'0' * 16}-01",
    f"00-{CALLER_TRACE}-{CALLER_SPAN}", f"00-{CALLER_TRACE[:-1]}-{CALLER_SPAN}-01",
    f"00-{CALLER_TRACE}-{CALLER_SPAN}-zz", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-extra"])
def test_malformed_trace_contexts_are_ignored(value: str) -> None:
    assert parse_traceparent(value) is None
    trace = pod_trace(pod(trace_context=value))
    assert trace is not None and not trace.spans[0].links and trace.trace_id == trace_id(UID)
