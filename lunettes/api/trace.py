"""A stored pod record as the spans of its trace: the ids, parents, times and attributes
the OTLP sink (:mod:`lunettes.sinks.otlp_spans`) exports for the same Pod, without the
protobuf dependency.

The trace id is the Pod's UID (:func:`lunettes.model.ids.trace_id`), span ids come from
(uid, stage, instance); the first stored stage is the root and every other stage is its
child, as the stages analyzer makes them. A record without stages gets the synthetic root
the OTLP sink makes. Open stages end where the OTLP sink ends them (the Pod's finish, else
its last sighting) and say ``open: true``. Span events (warning Events) are not stored
with the record, so they are not here; the spans in Jaeger have them.
"""

from __future__ import annotations

from typing import Any

from lunettes.model.ids import span_id, trace_id
from lunettes.model.semconv import (
    ERROR_OUTCOMES,
    INSTANCE_ATTRIBUTES,
    OWNER_ATTRIBUTES,
    ROOT_STAGE,
)
from lunettes.model.times import format_time, parse_time

__all__ = ["jaeger_link", "trace_of"]


def _us(value: Any) -> int | None:
    return parse_time(value) if isinstance(value, str) and value else None


def jaeger_link(base_url: str | None, trace_id_hex: str) -> str | None:
    """``{base}/trace/{trace id}``, or None without a base URL."""
    return f"{base_url.rstrip('/')}/trace/{trace_id_hex}" if base_url else None


def trace_of(record: dict[str, Any], jaeger_url: str | None = None) -> dict[str, Any]:
    """``{trace_id, jaeger_url, spans: [...]}`` of a stored pod record."""
    uid = str(record["uid"])
    created, finished = _us(record.get("created")), _us(record.get("finished"))
    last_seen = _us(record.get("last_seen"))
    stages = [(s, _us(s.get("start")), _us(s.get("end"))) for s in record.get("stages") or []
              if _us(s.get("start")) is not None]
    fallback_end = finished if finished is not None else last_seen
    if not stages:
        root = _synthetic_root(created, finished, last_seen)
        if root is not None:
            stages = [root]
    root_name = str(stages[0][0]["name"]) if stages else ROOT_STAGE
    root_instance = str(stages[0][0].get("instance") or "") if stages else ""
    root_id = span_id(uid, root_name, root_instance).hex()
    tid = trace_id(uid).hex()
    pod_attrs: dict[str, Any] = {"k8s.namespace.name": record.get("namespace", ""),
                                 "k8s.pod.name": record.get("name", ""), "k8s.pod.uid": uid}
    if record.get("node"):
        pod_attrs["k8s.node.name"] = record["node"]

    spans = []
    for index, (stage, start_us, end_us) in enumerate(stages):
        assert start_us is not None
        name, instance = str(stage["name"]), str(stage.get("instance") or "")
        is_root = index == 0
        open_stage = end_us is None
        if end_us is None:
            end_us = fallback_end if fallback_end is not None else start_us
        end_us = max(end_us, start_us)
        attrs = dict(pod_attrs)
        attrs["lunettes.stage.name"] = name
        attrs["lunettes.stage.owner"] = stage.get("owner", "")
        key = INSTANCE_ATTRIBUTES.get(str(stage.get("instance_kind") or ""))
        if instance:
            attrs[key or "lunettes.stage.instance"] = instance
        if open_stage:
            attrs["lunettes.stage.open"] = True
        status = {"code": "unset", "message": ""}
        if is_root:
            attrs["lunettes.pod.outcome"] = record.get("outcome", "")
            attrs["lunettes.pod.partial"] = bool(record.get("partial"))
            if record.get("uid_derived"):
                attrs["lunettes.pod.uid_derived"] = True
            attrs.update(_owner_attributes(record))
            message = ERROR_OUTCOMES.get(str(record.get("outcome")))
            if message is not None:
                status = {"code": "error", "message": message}
        spans.append({
            "trace_id": tid,
            "span_id": span_id(uid, name, instance).hex(),
            "parent_span_id": None if is_root else root_id,
            "name": f"{name} {instance}" if instance else name,
            "stage": name,
            "instance": instance,
            "owner": stage.get("owner", ""),
            "start": format_time(start_us),
            "end": format_time(end_us),
            "start_unix_nano": start_us * 1000,
            "end_unix_nano": end_us * 1000,
            "duration_s": (end_us - start_us) / 1e6,
            "open": open_stage,
            "status": status,
            "attributes": attrs,
        })
    return {"trace_id": tid, "jaeger_url": jaeger_link(jaeger_url, tid), "spans": spans}


def _owner_attributes(record: dict[str, Any]) -> dict[str, str]:
    kind, name = str(record.get("owner_kind") or ""), str(record.get("owner_name") or "")
    if not kind and not name:
        return {}
    key = OWNER_ATTRIBUTES.get(kind)
    if key is not None and name:
        return {key: name}
    return {"lunettes.owner.kind": kind, "lunettes.owner.name": name}


def _synthetic_root(created: int | None, finished: int | None, last_seen: int | None
                    ) -> tuple[dict[str, Any], int, int | None] | None:
    """The root the OTLP sink makes for a record without stages."""
    start = created if created is not None else last_seen
    if start is None:
        return None
    end = finished if finished is not None else last_seen
    if end is not None and end < start:
        end = start
    return {"name": ROOT_STAGE, "instance": "", "owner": "platform"}, start, end
