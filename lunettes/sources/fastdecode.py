"""Typed decoding of one audit Event line with msgspec: only the fields lunettes reads.

The fast path of :mod:`lunettes.sources.decode`. msgspec decodes a line straight into
Structs holding the envelope fields of an :class:`~lunettes.model.audit.AuditRecord` and,
of each body, only the keys the folder reads (:mod:`lunettes.processors.bodies`,
:mod:`lunettes.model.spec`): the rest (``managedFields``, annotations of the request,
timestamps...) is skipped, never built. The Pod ``spec`` is kept raw (``msgspec.Raw``) and
decoded (by orjson, as the checked path reads it) only for creates, the one record the
folder reads it from (every status patch response repeats it). msgspec reads integers
beyond 64 bits as integers where orjson reads floats: the typed readers
(:mod:`lunettes.model.typed`) read both alike.

:func:`fast_event` answers None whenever msgspec refuses the line (not JSON, a null or a
value of another type where a string, an integer or an object is expected, an EventList,
another shape): the caller then decodes it with the checked path, which tolerates what it
can and names the bad field. A record it returns is the checked path's record with its
bodies cut to those keys (equality checked by ``tests/test_fastdecode.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import orjson
from msgspec import UNSET, Raw, Struct, UnsetType

from lunettes.model.audit import AuditRecord
from lunettes.model.times import parse_time

__all__ = ["fast_event"]

_VERSIONS = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"})


class _Meta(Struct, gc=False):
    """The metadata keys the folder reads."""

    name: Any = UNSET
    namespace: Any = UNSET
    uid: Any = UNSET
    generateName: Any = UNSET
    creationTimestamp: Any = UNSET
    labels: Any = UNSET
    annotations: Any = UNSET
    ownerReferences: Any = UNSET


class _Body(Struct, gc=False):
    """The keys the folder reads of a Pod, Binding, Event (core/v1 and events.k8s.io) or
    a patch of one; ``kind`` and ``apiVersion`` keep a body non-empty as it was."""

    kind: Any = UNSET
    apiVersion: Any = UNSET
    metadata: _Meta | UnsetType = UNSET
    spec: Raw | UnsetType = UNSET
    status: Any = UNSET
    target: Any = UNSET
    involvedObject: Any = UNSET
    regarding: Any = UNSET
    reason: Any = UNSET
    type: Any = UNSET
    message: Any = UNSET
    note: Any = UNSET
    series: Any = UNSET
    count: Any = UNSET
    source: Any = UNSET
    reportingController: Any = UNSET
    reportingComponent: Any = UNSET


class _Ref(Struct, frozen=True, gc=False):
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    apiGroup: str = ""
    uid: str = ""


class _Status(Struct, frozen=True, gc=False):
    code: Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)] = 0
    """Wider integers (floats to orjson beyond 64 bits) take the checked path."""
    message: str = ""
    reason: str = ""


class _User(Struct, frozen=True, gc=False):
    username: str = ""
    groups: tuple[str, ...] = ()


class _Event(Struct, gc=False):
    kind: str = ""
    apiVersion: str = "audit.k8s.io/v1"
    level: str = ""
    auditID: str | UnsetType = UNSET
    stage: str | UnsetType = UNSET
    verb: str | UnsetType = UNSET
    user: _User = _User()
    userAgent: str = ""
    objectRef: _Ref = _Ref()
    responseStatus: _Status = _Status()
    requestObject: _Body | None = None
    responseObject: _Body | None = None
    requestReceivedTimestamp: str = ""
    timestamp: str = ""
    """What the earliest audit versions wrote instead of requestReceivedTimestamp."""


_decode = msgspec.json.Decoder(_Event).decode
_META_KEYS = _Meta.__struct_fields__
_BODY_KEYS = tuple(k for k in _Body.__struct_fields__ if k not in ("metadata", "spec"))


def fast_event(raw: bytes, origin: str = "") -> AuditRecord | None:
    """The AuditRecord of a line holding one audit.k8s.io Event, or None when msgspec
    refuses it or the record needs the checked path (decode it there)."""
    try:
        event = _decode(raw)
    except (msgspec.DecodeError, RecursionError):  # invalid JSON, a mistyped field, too deep
        return None
    audit_id, stage, verb = event.auditID, event.stage, event.verb
    received = event.requestReceivedTimestamp or event.timestamp
    if (event.kind != "Event" or event.apiVersion not in _VERSIONS or not received
            or audit_id is UNSET or stage is UNSET or verb is UNSET):
        return None
    try:
        received_us = parse_time(received)
    except ValueError:
        return None
    create = verb == "create"
    request, response = event.requestObject, event.responseObject
    request_dict = response_dict = None
    if request is not None:
        request_dict = _as_dict(request, create)
        if not request_dict:
            return None  # no key it knows: the checked path keeps the body as it is
    if response is not None:
        response_dict = _as_dict(response, create)
        if not response_dict:
            return None
    ref, status, user = event.objectRef, event.responseStatus, event.user
    return AuditRecord(
        audit_id, stage, verb, received_us, ref.resource, ref.subresource, ref.namespace,
        ref.name, ref.apiGroup, ref.uid, status.code, status.message, status.reason,
        user.username, event.userAgent, event.level, request_dict, response_dict, origin,
        user.groups)


def _as_dict(body: _Body, with_spec: bool) -> dict[str, Any]:
    """A body as the folder reads it: its known keys, the spec decoded when asked."""
    out = {key: value for key in _BODY_KEYS
           if (value := getattr(body, key)) is not UNSET}
    meta = body.metadata
    if meta is not UNSET:
        out["metadata"] = {key: value for key in _META_KEYS
                           if (value := getattr(meta, key)) is not UNSET}
    if with_spec and body.spec is not UNSET:
        out["spec"] = orjson.loads(memoryview(body.spec))  # as the checked path reads it
    return out
