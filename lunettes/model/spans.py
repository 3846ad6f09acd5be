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
  the root carries the Pod's outcome, owner, SLO result and diagnosis (so a trace can be
  found by tag: ``lunettes.slo.result=violated``, ``lunettes.diagnosis.reason=...``), and
  an error status for failed outcomes. A stage's span events (warning Events) become span
  events, their message an attribute.
- The stage the diagnosis names carries the diagnosis' evidence as span events and, when
  the Pod failed, the error status (the root keeps its own). Every span event made from an
  audit record carries that record's audit ID as ``audit-id``, the attribute name
  kube-apiserver's own spans use, so one tag search finds both.
- A W3C trace context the Pod (or its owner) carried (``PodRecord.trace_context``) becomes
  a span link on the root, or with ``link_as_parent`` the root's parent (the trace is then
  the caller's, not the UID's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lunettes.analyzers.base import DIAGNOSIS, SLO
from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.results import Results
from lunettes.model.schema import BOOLEAN, FLOAT, INTEGER, KEYWORD
from lunettes.model.semconv import (
    AUDIT_ID,
    ERROR_OUTCOMES,
    INSTANCE_ATTRIBUTES,
    OWNER_ATTRIBUTES,
    ROOT_STAGE,
)
from lunettes.model.times import parse_time

__all__ = ["AUDIT_ID", "ERROR", "UNSET", "AttrValue", "Attribute", "Event", "Link", "Span",
           "Trace", "parse_traceparent", "pod_trace"]

AttrValue = str | bool | int | float
Attribute = tuple[str, AttrValue]

UNSET = "unset"
ERROR = "error"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(slots=True)
class Event:
    """A span event: a point in time with a name and attributes."""

    time_ns: int
    name: str
    attributes: list[Attribute]


@dataclass(slots=True)
class Link:
    """A link to a span of another trace (the caller's W3C trace context)."""

    trace_id: bytes
    span_id: bytes
    trace_state: str = ""
    flags: int = 0
    attributes: list[Attribute] = field(default_factory=list)


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
    links: list[Link] = field(default_factory=list)
    user_intervals: list[tuple[int, int]] = field(default_factory=list)
    """The parts of the span the SLO counts as user time (unix nanoseconds)."""
    remote_parent: bool = False
    """The parent span is another process's (the caller's trace context)."""


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


def parse_traceparent(value: str) -> Link | None:
    """The span a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``, optionally
    followed by ``;<tracestate>``) names, or None when it is malformed or all zero."""
    parent, _, state = value.strip().partition(";")
    match = _TRACEPARENT.fullmatch(parent.strip().lower())
    if match is None:
        return None
    tid, sid, flags = match.groups()
    if int(tid, 16) == 0 or int(sid, 16) == 0:
        return None
    return Link(bytes.fromhex(tid), bytes.fromhex(sid), state.strip(), int(flags, 16))


def pod_trace(record: PodRecord, link_as_parent: bool = False,
              results: Results | None = None) -> Trace | None:
    """The trace of a pod record, or None when the record has no time to place a span.

    With ``link_as_parent``, a record's trace context makes the root a child of the
    caller's span, in the caller's trace, instead of a link from the UID's trace.
    ``results`` says which result plays the SLO and diagnosis roles and which other
    results there are (None: those roles under their own names, no others)."""
    results = results or Results()
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
        owner = stage.effective_owner or stage.owner
        attributes: list[Attribute] = [("lunettes.stage.name", stage.name),
                                       ("lunettes.stage.owner", owner)]
        if stage.user_intervals:
            attributes.append(("lunettes.stage.user_time_s", round(
                sum(e - s for s, e in stage.user_intervals) / 1e6, 6)))
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
            owner=owner,
            start_ns=start_us * 1000,
            end_ns=end_us * 1000,
            open=open_stage,
            attributes=attributes,
            events=[_event(e) for e in stage.events],
            user_intervals=[(s * 1000, e * 1000) for s, e in stage.user_intervals],
        )
        if stage is root:
            _describe_root(span, record, results)
        spans.append(span)
    _mark_cause(spans, record, results.get(record, DIAGNOSIS))

    pod: list[Attribute] = [("k8s.namespace.name", record.namespace),
                            ("k8s.pod.name", record.name), ("k8s.pod.uid", uid)]
    if record.node:
        pod.append(("k8s.node.name", record.node))
    tid = trace_id(uid)
    caller = parse_traceparent(record.trace_context) if record.trace_context else None
    if caller is not None:
        if link_as_parent:
            tid, spans[index].parent_span_id = caller.trace_id, caller.span_id
            spans[index].remote_parent = True
        else:
            spans[index].links.append(caller)
    return Trace(tid, pod, spans)


def _describe_root(span: Span, record: PodRecord, results: Results) -> None:
    """The Pod's outcome, identity flags and owner on the root span, the SLO and diagnosis
    results (``lunettes.slo.*``, ``lunettes.diagnosis.*``) and the scalar fields other
    analyzers declare (``lunettes.<name>.<key>``); errors as status."""
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
    _copy(attributes, results.get(record, SLO), _SLO_ATTRIBUTES)
    _copy(attributes, results.get(record, DIAGNOSIS), _DIAGNOSIS_ATTRIBUTES)
    for schema in results.schemas:
        if SLO not in schema.roles and DIAGNOSIS not in schema.roles:
            _copy(attributes, results.get_named(record, schema.name),
                  {f.name: f"lunettes.{schema.name}.{f.name}" for f in schema.fields
                   if f.type in _ATTRIBUTE_TYPES and not f.many})


_SLO_ATTRIBUTES = {"result": "lunettes.slo.result", "class": "lunettes.slo.class",
                   "deadline_s": "lunettes.slo.deadline_s",
                   "platform_s": "lunettes.slo.platform_s", "user_s": "lunettes.slo.user_s"}
_ATTRIBUTE_TYPES = frozenset({KEYWORD, INTEGER, FLOAT, BOOLEAN})
"""Declared result fields that become root span attributes."""
_DIAGNOSIS_ATTRIBUTES = {"reason": "lunettes.diagnosis.reason",
                         "owner": "lunettes.diagnosis.owner",
                         "stage": "lunettes.diagnosis.stage"}


def _copy(attributes: list[Attribute], result: dict[str, Any], names: dict[str, str]) -> None:
    """``result``'s values under their attribute names, where set and of an attribute type."""
    for key, name in names.items():
        value = result.get(key)
        if isinstance(value, str | bool | int | float) and value != "":
            attributes.append((name, value))


_EVIDENCE: Attribute = ("lunettes.evidence", True)


def _mark_cause(spans: list[Span], record: PodRecord, diagnosis: dict[str, Any]) -> None:
    """The diagnosis' evidence as span events of the stage it names (the root when no span
    of that stage exists), with an error status there when the Pod failed."""
    if not diagnosis.get("reason"):
        return
    evidence = [e for e in diagnosis.get("evidence") or () if isinstance(e, dict)]
    containers = {str(e.get("container")) for e in evidence if e.get("container")}
    candidates = [s for s in spans if s.stage == diagnosis.get("stage")]
    cause = next((s for s in candidates if s.instance and s.instance in containers),
                 next((s for s in candidates if s.open), candidates[-1] if candidates
                      else spans[0]))
    seen = {v: e for e in cause.events for k, v in e.attributes if k == AUDIT_ID}
    for item in evidence:
        shown = seen.get(str(item.get("audit_id") or ""))
        if shown is not None:  # a warning Event the stage shows already: mark it
            if _EVIDENCE not in shown.attributes:
                shown.attributes.append(_EVIDENCE)
        elif (event := _evidence_event(item)) is not None:
            cause.events.append(event)
    cause.events.sort(key=lambda e: e.time_ns)
    if cause is not spans[0] and record.outcome in ERROR_OUTCOMES:
        message = str(diagnosis.get("message") or "")
        cause.status = ERROR
        cause.status_message = f"{diagnosis['reason']}: {message}" if message else str(
            diagnosis["reason"])


def _evidence_event(item: dict[str, Any]) -> Event | None:
    """One piece of diagnosis evidence as a span event, None without a readable time."""
    time = item.get("time")
    try:
        time_us = parse_time(time) if isinstance(time, str) else None
    except ValueError:
        time_us = None
    if time_us is None:
        return None
    attributes: list[Attribute] = [_EVIDENCE]
    for key, name in (("audit_id", AUDIT_ID), ("source", "lunettes.source"),
                      ("op", "lunettes.op"), ("container", "k8s.container.name"),
                      ("message", "message")):
        value = item.get(key)
        if value:
            attributes.append((name, str(value)))
    return Event(time_us * 1000, str(item.get("reason") or item.get("op") or "evidence"),
                 attributes)


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
