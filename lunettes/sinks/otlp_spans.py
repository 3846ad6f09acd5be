"""PodRecord -> OTLP ResourceSpans: one resource per Pod, one span per stage instance.

Pure mapping, no I/O. Ids come from :mod:`lunettes.model.ids`, so replaying the same
record always yields the same trace and span ids (a backend deduplicates or overwrites).
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from lunettes import __version__
from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord, Stage
from lunettes.model.semconv import (
    ERROR_OUTCOMES,
    INSTANCE_ATTRIBUTES,
    OWNER_ATTRIBUTES,
    ROOT_STAGE,
)

SCOPE_NAME = "lunettes"
AttrValue = str | bool | int | float


def _kv(key: str, value: AttrValue) -> KeyValue:
    if isinstance(value, bool):
        any_value = AnyValue(bool_value=value)
    elif isinstance(value, int):
        any_value = AnyValue(int_value=value)
    elif isinstance(value, float):
        any_value = AnyValue(double_value=value)
    else:
        any_value = AnyValue(string_value=str(value))
    return KeyValue(key=key, value=any_value)


def _attributes(pairs: Iterable[tuple[str, AttrValue]]) -> list[KeyValue]:
    return [_kv(k, v) for k, v in pairs]


def _pod_attributes(record: PodRecord) -> list[tuple[str, AttrValue]]:
    pairs: list[tuple[str, AttrValue]] = [
        ("k8s.namespace.name", record.namespace),
        ("k8s.pod.name", record.name),
        ("k8s.pod.uid", record.uid),
    ]
    if record.node:
        pairs.append(("k8s.node.name", record.node))
    return pairs


def _owner_attributes(record: PodRecord) -> list[tuple[str, AttrValue]]:
    if not record.owner_kind and not record.owner_name:
        return []
    key = OWNER_ATTRIBUTES.get(record.owner_kind)
    if key is not None and record.owner_name:
        return [(key, record.owner_name)]
    return [("lunettes.owner.kind", record.owner_kind), ("lunettes.owner.name", record.owner_name)]


def span_name(stage: Stage) -> str:
    """The span name of a stage: its name, followed by the instance for per-instance ones."""
    return f"{stage.name} {stage.instance}" if stage.instance else stage.name


def record_end_us(record: PodRecord) -> int | None:
    """Where open stages end: the pod's finish, else the last time it was seen."""
    if record.finished_us is not None:
        return record.finished_us
    return record.last_seen_us


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


def record_to_resource_spans(
    record: PodRecord, service_name: str = "lunettes"
) -> ResourceSpans | None:
    """The ResourceSpans of one Pod, or None when the record has no time to place a span."""
    stages = list(record.stages)
    root = next((s for s in stages if not s.parent), None)
    if root is None:
        root = _synthetic_root(record)
        if root is None:
            return None
        stages.insert(0, root)

    ids: dict[str, bytes] = {}
    for stage in stages:
        ids.setdefault(stage.name, span_id(record.uid, stage.name, stage.instance))
    root_id = span_id(record.uid, root.name, root.instance)
    tid = trace_id(record.uid)
    pod_pairs = _pod_attributes(record)
    fallback_end = record_end_us(record)

    spans = []
    for stage in stages:
        is_root = stage is root
        end_us = stage.end_us
        open_stage = end_us is None
        if end_us is None:
            end_us = fallback_end if fallback_end is not None else stage.start_us
        end_us = max(end_us, stage.start_us)

        pairs = list(pod_pairs)
        pairs.append(("lunettes.stage.name", stage.name))
        pairs.append(("lunettes.stage.owner", stage.owner))
        instance_key = INSTANCE_ATTRIBUTES.get(stage.instance_kind)
        if stage.instance and instance_key is not None:
            pairs.append((instance_key, stage.instance))
        elif stage.instance:
            pairs.append(("lunettes.stage.instance", stage.instance))
        if open_stage:
            pairs.append(("lunettes.stage.open", True))
        status = Status()
        if is_root:
            pairs.append(("lunettes.pod.outcome", record.outcome))
            pairs.append(("lunettes.pod.partial", record.partial))
            if record.uid_derived:
                pairs.append(("lunettes.pod.uid_derived", True))
            pairs.extend(_owner_attributes(record))
            message = ERROR_OUTCOMES.get(record.outcome)
            if message is not None:
                status = Status(code=Status.STATUS_CODE_ERROR, message=message)

        span = Span(
            trace_id=tid,
            span_id=span_id(record.uid, stage.name, stage.instance),
            name=span_name(stage),
            kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=stage.start_us * 1000,
            end_time_unix_nano=end_us * 1000,
            attributes=_attributes(pairs),
            status=status,
        )
        if not is_root:
            span.parent_span_id = ids.get(stage.parent, root_id)
        for event in stage.events:
            event_pairs: list[tuple[str, AttrValue]] = list(event.attributes.items())
            if event.message:
                event_pairs.append(("message", event.message))
            span.events.add(
                time_unix_nano=event.time_us * 1000,
                name=event.name,
                attributes=_attributes(event_pairs),
            )
        spans.append(span)

    resource_pairs: list[tuple[str, AttrValue]] = [("service.name", service_name), *pod_pairs]
    return ResourceSpans(
        resource=Resource(attributes=_attributes(resource_pairs)),
        scope_spans=[
            ScopeSpans(
                scope=InstrumentationScope(name=SCOPE_NAME, version=__version__),
                spans=spans,
            )
        ],
    )
