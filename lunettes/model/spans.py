"""A Pod's delivery trace as plain spans: the one mapping from a pod record to its spans.

The OTLP sink encodes these (:mod:`lunettes.sinks.otlp_encode`) and the API's trace view
shows them (:mod:`lunettes.api.trace`), so the two always agree. No protobuf here.

- The trace id is the Pod's UID, span ids come from (uid, stage, instance)
  (:mod:`lunettes.model.ids`): replaying a log yields the same ids.
- The root span is the first stage without a parent; a record without one gets a
  synthetic ``delivery`` root from its known times, and a record with no time at all has
  no trace. Every other span hangs under its stage's parent, or the root when no stage of
  that name exists.
- An open stage ends at the Pod's finish, else its last sighting, else its own start, and
  says ``lunettes.stage.open``; no span ends before it starts.
- Attributes follow the OpenTelemetry semantic conventions (:mod:`lunettes.model.semconv`);
  the root carries the Pod's outcome and owner, and an error status for failed outcomes.
  A stage's span events (warning Events) become span events, their message an attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.semconv import (
    ERROR_OUTCOMES,
    INSTANCE_ATTRIBUTES,
    OWNER_ATTRIBUTES,
    ROOT_STAGE,
)

__all__ = ["ERROR", "UNSET", "AttrValue", "Attribute", "Event", "Span", "Trace", "pod_trace"]

AttrValue = str | bool | int | float
Attribute = tuple[str, AttrValue]

UNSET = "unset"
ERROR = "error"


@dataclass(slots=True)
class Event:
    """A span event: a point in time with a name and attributes."""

    time_ns: int
    name: str
    attributes: list[Attribute]


@dataclass(slots=True)
class Span:
    """One stage instance of a Pod as a span of its trace.

    ``attributes`` are the span's own; on the wire and in the API they follow the trace's
    ``pod_attributes`` (see :meth:`Trace.attributes_of`). ``parent_span_id`` is empty for
    the root. ``status`` is :data:`UNSET` or :data:`ERROR` (with ``status_message``).
    """

    span_id: bytes
    parent_span_id: bytes
    name: str
    stage: str
    instance: str
    owner: str
    start_ns: int
    end_ns: int
    open: bool
    attributes: list[Attribute]
    status: str = UNSET
    status_message: str = ""
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class Trace:
    """The spans of one Pod, the root first.

    ``pod_attributes`` name the Pod (namespace, name, uid, node): they are the resource's
    attributes and the first attributes of every span.
    """

    trace_id: bytes
    pod_attributes: list[Attribute]
    spans: list[Span]

    def attributes_of(self, span: Span) -> list[Attribute]:
        """Every attribute of ``span``: the Pod's, then its own."""
        return [*self.pod_attributes, *span.attributes]


def pod_trace(record: PodRecord) -> Trace | None:
    """The trace of a pod record, or None when the record has no time to place a span."""
    stages = record.stages
    index = next((i for i, s in enumerate(stages) if not s.parent), None)
    if index is None:
        synthetic = _synthetic_root(record)
        if synthetic is None:
            return None
        stages, index = [synthetic, *stages], 0
    root = stages[index]

    uid = record.uid
    span_ids = [span_id(uid, s.name, s.instance) for s in stages]
    by_name: dict[str, bytes] = {}
    for stage, sid in zip(stages, span_ids, strict=True):
        by_name.setdefault(stage.name, sid)
    root_id = span_ids[index]
    fallback_end = record.finished_us if record.finished_us is not None else record.last_seen_us

    spans = []
    for stage, sid in zip(stages, span_ids, strict=True):
        start_us, end_us = stage.start_us, stage.end_us
        open_stage = end_us is None
        if end_us is None:
            end_us = fallback_end if fallback_end is not None else start_us
        if end_us < start_us:
            end_us = start_us
        instance = stage.instance
        attributes: list[Attribute] = [("lunettes.stage.name", stage.name),
                                       ("lunettes.stage.owner", stage.owner)]
        if instance:
            key = INSTANCE_ATTRIBUTES.get(stage.instance_kind, "lunettes.stage.instance")
            attributes.append((key, instance))
        if open_stage:
            attributes.append(("lunettes.stage.open", True))
        span = Span(
            span_id=sid,
            parent_span_id=b"" if stage is root else by_name.get(stage.parent, root_id),
            name=f"{stage.name} {instance}" if instance else stage.name,
            stage=stage.name,
            instance=instance,
            owner=stage.owner,
            start_ns=start_us * 1000,
            end_ns=end_us * 1000,
            open=open_stage,
            attributes=attributes,
            events=[_event(e) for e in stage.events],
        )
        if stage is root:
            _describe_root(span, record)
        spans.append(span)

    pod: list[Attribute] = [("k8s.namespace.name", record.namespace),
                            ("k8s.pod.name", record.name), ("k8s.pod.uid", uid)]
    if record.node:
        pod.append(("k8s.node.name", record.node))
    return Trace(trace_id(uid), pod, spans)


def _describe_root(span: Span, record: PodRecord) -> None:
    """The Pod's outcome, identity flags and owner on the root span; errors as status."""
    attributes = span.attributes
    attributes.append(("lunettes.pod.outcome", record.outcome))
    attributes.append(("lunettes.pod.partial", record.partial))
    if record.uid_derived:
        attributes.append(("lunettes.pod.uid_derived", True))
    kind, name = record.owner_kind, record.owner_name
    if kind or name:
        key = OWNER_ATTRIBUTES.get(kind)
        if key is not None and name:
            attributes.append((key, name))
        else:
            attributes.append(("lunettes.owner.kind", kind))
            attributes.append(("lunettes.owner.name", name))
    message = ERROR_OUTCOMES.get(record.outcome)
    if message is not None:
        span.status, span.status_message = ERROR, message


def _event(event: SpanEvent) -> Event:
    attributes: list[Attribute] = list(event.attributes.items())
    if event.message:
        attributes.append(("message", event.message))
    return Event(event.time_us * 1000, event.name, attributes)


def _synthetic_root(record: PodRecord) -> Stage | None:
    """A root stage for a record that has none, from its known times; None if none."""
    starts = [s.start_us for s in record.stages]
    if record.created_us is not None:
        starts.append(record.created_us)
    if not starts:
        if record.last_seen_us is None:
            return None
        starts.append(record.last_seen_us)
    start = min(starts)
    end = record.finished_us
    if end is None:
        ends = [s.end_us for s in record.stages if s.end_us is not None]
        if record.last_seen_us is not None:
            ends.append(record.last_seen_us)
        end = max(ends) if ends else None
    if end is not None and end < start:
        end = start
    return Stage(name=ROOT_STAGE, owner="platform", start_us=start, end_us=end)
