"""Managed-cluster log exports that wrap each audit Event in a record of their own.

- Azure Monitor resource logs (AKS diagnostic settings, category ``kube-audit`` or
  ``kube-audit-admin``): ``{"category": .., "properties": {"log": "<audit Event JSON>"}}``,
  batched as ``{"records": [...]}`` on Event Hubs, one record per line in a storage account.
- CloudWatch Logs (EKS, log stream ``kube-apiserver-audit-*``): ``aws logs get-log-events``
  / ``filter-log-events`` answers ``{"events": [{"message": "<audit Event JSON>"}]}``, and
  an export to S3 writes each message after its time (``2026-01-01T00:00:00.000Z {...}``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from lunettes.sources.errors import BadRecord
from lunettes.sources.jsonline import loads

AUDIT_CATEGORIES = frozenset({"kube-audit", "kube-audit-admin"})
_TIMESTAMPED = re.compile(rb"^\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)? (?=[{\[])")


def batch(doc: dict[str, Any]) -> list[Any] | None:
    """The records of an Event Hubs batch or the events of a CloudWatch answer, else None."""
    if "kind" in doc:
        return None
    for key in ("records", "events"):
        items = doc.get(key)
        if isinstance(items, list):
            return items
    return None


def wrapped(doc: dict[str, Any]) -> str | dict[str, Any] | None:
    """The audit Event (JSON text or object) inside one resource-log record or CloudWatch
    event, else None. Raises BadRecord for a resource log of another category (the
    kube-apiserver's own log lines, the scheduler's...), which is not an audit Event."""
    properties = doc.get("properties")
    if isinstance(properties, dict) and "log" in properties:
        category = doc.get("category")
        if isinstance(category, str) and category not in AUDIT_CATEGORIES:
            raise BadRecord("not_audit_category", category)
        inner = properties["log"]
    elif "message" in doc and ("logStreamName" in doc or "ingestionTime" in doc
                               or "timestamp" in doc) and "kind" not in doc:
        inner = doc["message"]
    else:
        return None
    if isinstance(inner, str | dict):
        return inner
    raise BadRecord("wrong_type:log", f"expected a JSON string, got {type(inner).__name__}")


def unwrap(inner: str | dict[str, Any]) -> Any:
    """Decode the JSON text of a wrapped Event (objects are returned as they are)."""
    if isinstance(inner, dict):
        return inner
    try:
        return loads(inner)
    except orjson.JSONDecodeError as exc:
        raise BadRecord("invalid_json:log", str(exc)) from exc


def strip_time_prefix(raw: bytes) -> bytes | None:
    """The JSON after the time an S3 export of CloudWatch Logs puts before each message;
    None when the line has no such prefix."""
    prefix = _TIMESTAMPED.match(raw)
    return None if prefix is None else raw[prefix.end():]
