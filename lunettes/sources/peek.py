"""A few fields of a kube-apiserver audit line, read from its bytes without decoding it.

Most lines of an audit log are about other resources (leases, configmaps, nodes, lists and
watches); the folder never reads them. kube-apiserver writes every audit.k8s.io/v1 line in
the same field order (``{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":..,
"auditID":..,"stage":..,"requestURI":..,"verb":..,"user":..,..,"objectRef":{"resource":..,
"namespace":..,"name":..,..},..,"requestObject":..,"responseObject":..,
"requestReceivedTimestamp":..``), and a JSON string cannot hold an unescaped quote, so
those fields are matched at their place before any value could fake them, and the
timestamp is the last of its name, after the bodies. The request URI names the resource
(kube-apiserver derives ``objectRef`` from it), so most records are told apart without
reading further.

:func:`peek` answers None whenever the bytes do not tell for sure (another shape or
version, an escape in a value, a line that is not one whole object); such lines are decoded.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

from lunettes.model.audit import FOLDED_VERBS
from lunettes.model.times import parse_time

_HEAD = re.compile(
    rb'\{"kind":"Event","apiVersion":"audit\.k8s\.io/v1","level":"[A-Za-z]+",'
    rb'"auditID":"([^"\\]*)","stage":"([A-Za-z]+)","requestURI":"([^"\\]*(?:\\.[^"\\]*)*)",'
    rb'"verb":"([a-z]+)"')
_OBJECT_REF = re.compile(
    rb'"objectRef":\{"resource":"([^"\\]*)"(?:,"namespace":"([^"\\]*)")?'
    rb'(?:,"name":"([^"\\]*)")?[,}]')
_RECEIVED = b'"requestReceivedTimestamp":"'
_CREATED_POD = re.compile(
    rb'"responseObject":\{"kind":"Pod","apiVersion":"v1","metadata":\{"name":"([^"\\]+)"')
_FINAL = (b"ResponseComplete", b"Panic")
_WHOLE = (b"}\n", b"}", b"}\r\n")
_FOLDED = {resource.encode(): frozenset(verb.encode() for verb in verbs)
           for resource, verbs in FOLDED_VERBS.items()}
_CHANGES = frozenset().union(*_FOLDED.values())
_VERBS = {verb.decode(): verb for verb in _CHANGES}
_FINAL_TEXT = frozenset(stage.decode() for stage in _FINAL)
_STAGE_BYTES = {stage.decode(): stage for stage in (*_FINAL, b"RequestReceived",
                                                    b"ResponseStarted")}
_SECONDS: dict[bytes, int] = {}


class Peek(NamedTuple):
    """What the bytes of one audit line tell. ``resource``, ``namespace`` and ``name`` are
    empty when absent, and for records that cannot be about a Pod."""

    final: bool
    verb: bytes
    resource: bytes
    namespace: bytes
    name: bytes
    audit_id: bytes = b""
    stage: bytes = b""
    received: int | None = None
    """The requestReceivedTimestamp of a final stage, when the reader decoded it already
    (:func:`peek_decoded`); else None, and :func:`received_us` reads it."""


def peek(raw: bytes) -> Peek | None:
    """The stage, verb and (for records that may be about Pods) objectRef of a one-line
    kube-apiserver audit Event; None when the bytes do not tell."""
    head = _HEAD.match(raw)
    if head is None or not raw.endswith(_WHOLE):
        return None
    audit_id, stage, uri, verb = head.groups()
    final = stage in _FINAL
    if verb not in _CHANGES or (b"/pods" not in uri and b"/events" not in uri):
        return Peek(final, verb, b"", b"", b"", audit_id, stage)
    ref = _OBJECT_REF.search(raw, head.end())
    if ref is None:
        return None
    resource, namespace, name = ref.groups(b"")
    return Peek(final, verb, resource, namespace, name, audit_id, stage)


class ObjectRef(Protocol):
    """An objectRef decoded already."""

    resource: str
    namespace: str
    name: str


def peek_decoded(audit_id: str, stage: str, uri: str, verb: str, ref: ObjectRef | None,
                 received: int | None) -> Peek | None:
    """:func:`peek`'s answer for a line decoded already (the API server load analysis
    decodes every line): ``ref`` its objectRef (None when it has none), ``received`` its
    time when its stage is final."""
    final = stage in _FINAL_TEXT
    verb_bytes = _VERBS.get(verb) or verb.encode()
    stage_bytes = _STAGE_BYTES.get(stage) or stage.encode()
    if verb_bytes not in _CHANGES or ("/pods" not in uri and "/events" not in uri):
        return Peek(final, verb_bytes, b"", b"", b"", audit_id.encode(), stage_bytes,
                    received)
    if ref is None:
        return None
    return Peek(final, verb_bytes, ref.resource.encode(), ref.namespace.encode(),
                ref.name.encode(), audit_id.encode(), stage_bytes, received)


def time_of(raw: bytes, seen: Peek) -> int | None:
    """The requestReceivedTimestamp of a final line :func:`peek` read (None when it cannot
    be read)."""
    return seen.received if seen.received is not None else received_us(raw)


def clock_only(raw: bytes, seen: Peek) -> int | None:
    """For a line that cannot be about a Pod: the time it moves the audit clock to (0 for
    a stage that is not final). None when it may be about a Pod, or its time cannot be read:
    decode it."""
    if seen.verb in _FOLDED.get(seen.resource, ()):
        return None
    return time_of(raw, seen) if seen.final else 0


def received_us(raw: bytes) -> int | None:
    """The requestReceivedTimestamp of a line :func:`peek` read, or None.

    kube-apiserver writes it with six fractional digits (``2026-01-02T03:04:05.123456Z``);
    each second is parsed once, then its microseconds are added. Other shapes go through
    :func:`~lunettes.model.times.parse_time`.
    """
    at = raw.rfind(_RECEIVED)
    if at < 0:
        return None
    at += len(_RECEIVED)
    if raw[at + 26:at + 28] == b'Z"' and raw[at + 19] == 46:  # 46: "."
        fraction = raw[at + 20:at + 26]
        if fraction.isdigit():
            prefix = raw[at:at + 19]
            seconds = _SECONDS.get(prefix)
            if seconds is None:
                try:
                    seconds = parse_time(prefix.decode() + "Z") // 1_000_000
                except (ValueError, UnicodeDecodeError):
                    return None  # decoded instead, and refused there with its reason
                if len(_SECONDS) > 4096:
                    _SECONDS.clear()
                _SECONDS[prefix] = seconds
            return seconds * 1_000_000 + int(fraction)
    try:
        return parse_time(raw[at:raw.find(b'"', at)].decode())
    except (ValueError, UnicodeDecodeError):
        return None


_STAGES = {stage: stage.decode() for stage in _FINAL}


def deferred(raw: bytes, seen: Peek, received: int | None = None
             ) -> tuple[str, str, int] | None:
    """(auditID, stage, time) of a final-stage line :func:`peek` read, to deduplicate and
    order it before it is decoded; None when the bytes do not tell (decode it now).
    ``received``: its :func:`received_us`, when the caller read it already."""
    stage = _STAGES.get(seen.stage)
    if stage is None:
        return None
    if received is None:
        received = time_of(raw, seen)
    if received is None:
        return None
    try:
        return seen.audit_id.decode(), stage, received
    except UnicodeDecodeError:
        return None


def created_pod_name(raw: bytes) -> bytes | None:
    """The name kube-apiserver gave a created Pod (``generateName``), from its response
    body; None when the response is not a Pod or the bytes do not tell."""
    match = _CREATED_POD.search(raw)
    return None if match is None else match.group(1)
