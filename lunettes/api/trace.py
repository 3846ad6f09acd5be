"""A stored pod record as the spans of its trace: the spans the OTLP sink exports for the
same Pod (both come from :func:`lunettes.model.spans.pod_trace`), as JSON.

The stored record is read back into a :class:`~lunettes.model.record.PodRecord`: its first
stage is the root and every other stage the root's child, as the stages analyzer makes
them, each with its span events (warning Events); the analyzers' results (SLO, diagnosis)
and the caller's trace context come back too. Records stored before stages carried their
events show spans without events.
"""

from __future__ import annotations

from typing import Any

from lunettes.model.ids import trace_id
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.results import Results
from lunettes.model.schema import RECORD_FIELDS
from lunettes.model.spans import Span, Trace, pod_trace
from lunettes.model.times import format_time, parse_time

__all__ = ["jaeger_link", "record_of", "trace_of"]


def _us(value: Any) -> int | None:
    return parse_time(value) if isinstance(value, str) and value else None


def _text(value: Any) -> str:
    return str(value) if value else ""


def jaeger_link(base_url: str | None, trace_id_hex: str) -> str | None:
    """``{base}/trace/{trace id}``, or None without a base URL."""
    return f"{base_url.rstrip('/')}/trace/{trace_id_hex}" if base_url else None


_OWN_KEYS = frozenset(f.name for f in RECORD_FIELDS)
"""The keys of a stored record that are not an analyzer's result."""


def record_of(stored: dict[str, Any]) -> PodRecord:
    """The pod record a stored record (``PodRecord.to_dict()``) was made from, as far as
    its trace goes; stages without a start are skipped."""
    stages: list[Stage] = []
    for item in stored.get("stages") or []:
        start = _us(item.get("start"))
        if start is None:
            continue
        stages.append(Stage(
            name=_text(item.get("name")), owner=_text(item.get("owner")), start_us=start,
            end_us=_us(item.get("end")), instance=_text(item.get("instance")),
            instance_kind=_text(item.get("instance_kind")),
            parent=stages[0].name if stages else "",
            effective_owner=_text(item.get("effective_owner")),
            user_intervals=[(s, e) for pair in item.get("user_intervals") or []
                            if isinstance(pair, list) and len(pair) == 2
                            and (s := _us(pair[0])) is not None
                            and (e := _us(pair[1])) is not None],
            events=[SpanEvent(time, _text(e.get("name")), _text(e.get("message")),
                              {str(k): str(v) for k, v in (e.get("attributes") or {}).items()})
                    for e in item.get("events") or []
                    if (time := _us(e.get("time"))) is not None],
        ))
    return PodRecord(
        uid=str(stored["uid"]), namespace=_text(stored.get("namespace")),
        name=_text(stored.get("name")), node=_text(stored.get("node")),
        created_us=_us(stored.get("created")), finished_us=_us(stored.get("finished")),
        outcome=_text(stored.get("outcome")), partial=bool(stored.get("partial")),
        uid_derived=bool(stored.get("uid_derived")),
        owner_kind=_text(stored.get("owner_kind")), owner_name=_text(stored.get("owner_name")),
        last_seen_us=_us(stored.get("last_seen")), stages=stages,
        results={k: v for k, v in stored.items() if k not in _OWN_KEYS},
        trace_context=_text(stored.get("trace_context")),
    )


def trace_of(record: dict[str, Any], jaeger_url: str | None = None,
             results: Results | None = None) -> dict[str, Any]:
    """``{trace_id, jaeger_url, spans: [...]}`` of a stored pod record (no spans when it
    has no time to place one); ``results`` as :func:`lunettes.model.spans.pod_trace`."""
    pod = record_of(record)
    trace = pod_trace(pod, results=results)
    tid = (trace.trace_id if trace is not None else trace_id(pod.uid)).hex()
    spans = [] if trace is None else [_span_view(trace, tid, span) for span in trace.spans]
    return {"trace_id": tid, "jaeger_url": jaeger_link(jaeger_url, tid), "spans": spans}


def _span_view(trace: Trace, tid: str, span: Span) -> dict[str, Any]:
    start_us, end_us = span.start_ns // 1000, span.end_ns // 1000
    return {
        "trace_id": tid,
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex() or None,
        "name": span.name,
        "stage": span.stage,
        "instance": span.instance,
        "owner": span.owner,
        "start": format_time(start_us),
        "end": format_time(end_us),
        "start_unix_nano": span.start_ns,
        "end_unix_nano": span.end_ns,
        "duration_s": (end_us - start_us) / 1e6,
        "open": span.open,
        "user_intervals_unix_nano": [[s, e] for s, e in span.user_intervals],
        "status": {"code": span.status, "message": span.status_message},
        "attributes": dict(trace.attributes_of(span)),
        "events": [{"name": e.name, "time": format_time(e.time_ns // 1000),
                    "time_unix_nano": e.time_ns, "attributes": dict(e.attributes)}
                   for e in span.events],
        "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                   "trace_state": link.trace_state} for link in span.links],
    }
