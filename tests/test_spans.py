"""The neutral span builder: a pod record's trace as plain spans (no protobuf)."""

from __future__ import annotations

from typing import Any

from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.spans import ERROR, UNSET, Event, pod_trace

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
