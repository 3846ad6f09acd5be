"""Decode audit documents (Event, EventList, Cloud Logging entries) into AuditRecords."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lunettes.model.audit import AuditRecord
from lunettes.model.times import parse_time
from lunettes.sources.cloudlogging import from_log_entry, is_log_entry
from lunettes.sources.errors import BadRecord
from lunettes.sources.exports import batch, unwrap, wrapped
from lunettes.sources.fastdecode import fast_event
from lunettes.sources.jsonline import loads

AUDIT_API_VERSIONS = frozenset(
    {"audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"}
)


def _str(obj: dict[str, Any], key: str, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadRecord(f"missing_field:{key}")
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"wrong_type:{key}", f"expected string, got {type(value).__name__}")
    return value


def _dict(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRecord(f"wrong_type:{key}", f"expected object, got {type(value).__name__}")
    return value


def _body(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    """A request or response body: an object, or None when absent or when the request is
    a JSON patch (an array); any other type is a problem."""
    value = obj.get(key)
    if value is None or (type(value) is list and key == "requestObject"):
        return None
    if type(value) is not dict:
        raise BadRecord(f"wrong_type:{key}", f"expected object, got {type(value).__name__}")
    return value


_EMPTY: dict[str, Any] = {}


def decode_event(event: dict[str, Any], origin: str = "") -> AuditRecord:
    """Turn one audit.k8s.io Event (v1 or v1beta1) into an AuditRecord.

    Raises BadRecord for missing or mistyped fields and unparseable times.
    """
    # Fast path: every field present with its type (as kube-apiserver writes them), checked
    # inline. Anything else (nulls, missing or mistyped fields) takes the checked path below,
    # which names the problem.
    get = event.get
    audit_id, stage, verb = get("auditID"), get("stage"), get("verb")
    received = get("requestReceivedTimestamp")
    ref, status, user = get("objectRef", _EMPTY), get("responseStatus", _EMPTY), get(
        "user", _EMPTY)
    if (type(ref) is dict and type(status) is dict and type(user) is dict
            and type(audit_id) is str and type(stage) is str and type(verb) is str
            and type(received) is str and received):
        rget, sget = ref.get, status.get
        resource, subresource = rget("resource", ""), rget("subresource", "")
        namespace, name = rget("namespace", ""), rget("name", "")
        api_group, object_uid = rget("apiGroup", ""), rget("uid", "")
        code, message, reason = sget("code", 0), sget("message", ""), sget("reason", "")
        username, user_agent, level = user.get("username", ""), get("userAgent", ""), get(
            "level", "")
        if (type(resource) is str and type(subresource) is str and type(namespace) is str
                and type(name) is str and type(api_group) is str and type(object_uid) is str
                and type(code) is int and type(message) is str and type(reason) is str
                and type(username) is str and type(user_agent) is str
                and type(level) is str):
            try:
                received_us = parse_time(received)
            except ValueError as exc:
                raise BadRecord("bad_timestamp", received) from exc
            request, response = get("requestObject"), get("responseObject")
            if type(request) is not dict:
                request = _body(event, "requestObject")
            if type(response) is not dict:
                response = _body(event, "responseObject")
            return AuditRecord(
                audit_id, stage, verb, received_us, resource, subresource, namespace, name,
                api_group, object_uid, code, message, reason, username, user_agent, level,
                request, response, origin, _groups(user))
    return _decode_checked(event, origin)


def decode_line(raw: bytes, origin: str = "") -> AuditRecord:
    """The record of a line a source left undecoded (its bytes start as one audit.k8s.io/v1
    Event: :func:`~lunettes.sources.peek.deferred`), decoded as the source decodes such a
    line: the typed fast path, else the checked path. Raises BadRecord for a record
    lunettes cannot use, orjson's JSONDecodeError (a ValueError: ``invalid_json``) for
    bytes that are not JSON. (Bytes that start as an Event but decode to another shape, by
    repeating a key, are an ``unknown_kind``.)"""
    record = fast_event(raw, origin)
    if record is not None:
        return record
    doc = loads(raw)
    if type(doc) is dict and doc.get("kind") == "Event" and audit_version(doc):
        return decode_event(doc, origin)
    shown = doc if type(doc) is dict else {}
    raise BadRecord("unknown_kind", f"kind={_shown(shown.get('kind'))} "
                                    f"apiVersion={_shown(shown.get('apiVersion'))}")


def _decode_checked(event: dict[str, Any], origin: str) -> AuditRecord:
    """:func:`decode_event` field by field, raising BadRecord for the first problem."""
    received = _str(event, "requestReceivedTimestamp") or _str(event, "timestamp")
    if not received:
        raise BadRecord("missing_field:requestReceivedTimestamp")
    try:
        received_us = parse_time(received)
    except ValueError as exc:
        raise BadRecord("bad_timestamp", received) from exc
    ref = _dict(event, "objectRef")
    status = _dict(event, "responseStatus")
    user = _dict(event, "user")
    code = status.get("code", 0)
    if not isinstance(code, int) or isinstance(code, bool):
        raise BadRecord("wrong_type:responseStatus.code", repr(code))
    return AuditRecord(
        audit_id=_str(event, "auditID", required=True),
        stage=_str(event, "stage", required=True),
        verb=_str(event, "verb", required=True),
        received_us=received_us,
        resource=_str(ref, "resource"),
        subresource=_str(ref, "subresource"),
        namespace=_str(ref, "namespace"),
        name=_str(ref, "name"),
        api_group=_str(ref, "apiGroup"),
        object_uid=_str(ref, "uid"),
        code=code,
        status_message=_str(status, "message"),
        status_reason=_str(status, "reason"),
        username=_str(user, "username"),
        user_agent=_str(event, "userAgent"),
        level=_str(event, "level"),
        request=_body(event, "requestObject"),
        response=_body(event, "responseObject"),
        origin=origin,
        groups=_groups(user),
    )


def _groups(user: dict[str, Any]) -> tuple[str, ...]:
    """The user's groups, as strings (anything else in the list is left out)."""
    groups = user.get("groups")
    if type(groups) is not list:
        return ()
    return tuple(g for g in groups if type(g) is str)


MAX_DEPTH = 8
"""Documents nested deeper (arrays of batches of wrappers...) are refused (``too_deep``)."""


def audit_version(doc: dict[str, Any]) -> bool:
    """True when the document's apiVersion (default v1) is an audit.k8s.io version."""
    version = doc.get("apiVersion", "audit.k8s.io/v1")
    return type(version) is str and version in AUDIT_API_VERSIONS


def decode_document(doc: Any, origin: str = "", depth: int = 0
                    ) -> Iterator[AuditRecord | BadRecord]:
    """Yield the records of one decoded JSON/YAML document, or a BadRecord per problem.

    Accepts an audit Event (also without ``kind``/``apiVersion``, which some exporters
    strip), an EventList (the webhook backend's batches), a JSON array of either, Cloud
    Logging audit entries (GKE exports), and the wrappers of :mod:`~lunettes.sources.exports`
    (AKS resource logs, EKS CloudWatch events): a wrapped Event's origin is the wrapper's,
    with ``#n`` for the n-th record of a batch.
    """
    if depth > MAX_DEPTH:
        yield BadRecord("too_deep", f"documents nested more than {MAX_DEPTH} deep")
        return
    if depth == 0 and doc == []:
        yield BadRecord("empty_document", "an empty array")
        return
    depth += 1
    if isinstance(doc, list):
        for item in doc:
            yield from decode_document(item, origin, depth)
        return
    if not isinstance(doc, dict):
        yield BadRecord("not_an_object", type(doc).__name__)
        return
    kind = doc.get("kind")
    if kind == "EventList":
        items = doc.get("items")
        if not isinstance(items, list):
            yield BadRecord("wrong_type:items", "EventList without an items array")
            return
        for item in items:
            if isinstance(item, dict) and "kind" not in item:
                item = {**item, "kind": "Event"}
            yield from decode_document(item, origin, depth)
        return
    if (kind == "Event" and audit_version(doc)) \
            or (kind is None and _bare_event(doc)):
        try:
            yield decode_event(doc, origin)
        except BadRecord as bad:
            yield bad
        return
    if is_log_entry(doc):
        try:
            yield decode_event(from_log_entry(doc), origin)
        except BadRecord as bad:
            yield bad
        return
    items = batch(doc)
    if items is not None:
        for number, item in enumerate(items, 1):
            yield from decode_document(item, f"{origin}#{number}", depth)
        return
    try:
        inner = wrapped(doc)
        if inner is not None:
            yield from decode_document(unwrap(inner), origin, depth)
            return
    except BadRecord as bad:
        yield bad
        return
    version = doc.get("apiVersion")
    yield BadRecord("unknown_kind", f"kind={_shown(kind)} apiVersion={_shown(version)}")


def _shown(value: Any) -> str:
    """A value for a message: strings quoted and cut short, other types by name."""
    if isinstance(value, str):
        return repr(value[:64])
    return "None" if value is None else type(value).__name__


def _bare_event(doc: dict[str, Any]) -> bool:
    """An audit Event whose ``kind`` and ``apiVersion`` an exporter left out."""
    return ("auditID" in doc and "stage" in doc and "verb" in doc
            and audit_version(doc))
