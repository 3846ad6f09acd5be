"""Traces (:mod:`lunettes.model.spans`) as OTLP/protobuf bytes, written directly.

One Pod is one ``ResourceSpans`` (its resource: ``service.name`` and the Pod's attributes;
one scope, ``lunettes`` at the package version; one span per stage instance, kind
INTERNAL); an ``ExportTraceServiceRequest`` body is the concatenation of the
``ResourceSpans`` fields of its Pods. The bytes decode, with the official
opentelemetry-proto classes, to the messages those classes would build, and are laid out
as they would write them, except that fixed64 times of 0 are written, not omitted.

Protobuf wire format, as used here: a field is a tag (field number << 3 | wire type),
then a varint (wire type 0: ints, bools, enums; a negative int64 takes 10 bytes), 8
little-endian bytes (wire type 1: fixed64 times, doubles) or a varint length and that
many bytes (wire type 2: strings, bytes, messages). Empty strings and bytes outside a
oneof are omitted, as the official encoder does; an AnyValue's value is a oneof member,
so it is written even when empty, and so is an unset span status (an empty message the
mapping always sets).

Constant parts are encoded once (the scope, ``service.name``); the Pod's attributes once
per Pod for all its spans; string and bool attributes, span names and event names are
cached (stage names, owners, container and image names repeat across Pods), up to
``cache_size`` entries before the cache starts over.
"""

from __future__ import annotations

import struct

from lunettes import __version__
from lunettes.model.spans import ERROR, AttrValue, Event, Link, Span, Trace

__all__ = ["SCOPE_NAME", "OTLPEncoder"]

SCOPE_NAME = "lunettes"
_I64, _LEN = 1, 2
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_SMALL = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    """``n`` as a protobuf varint; a negative ``n`` as its 64-bit two's complement."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    n = len(body)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + body


# KeyValue, AnyValue (opentelemetry/proto/common/v1/common.proto)
_KV_KEY, _KV_VALUE = _tag(1, _LEN), _tag(2, _LEN)
_ANY_STRING, _ANY_INT, _ANY_DOUBLE = _tag(1, _LEN), _tag(3, 0), _tag(4, _I64)
_ANY_TRUE, _ANY_FALSE = _tag(2, 0) + b"\x01", _tag(2, 0) + b"\x00"
_SCOPE_NAME, _SCOPE_VERSION = _tag(1, _LEN), _tag(2, _LEN)
# Span, Span.Event, Status (opentelemetry/proto/trace/v1/trace.proto)
_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT = _tag(1, _LEN), _tag(2, _LEN), _tag(4, _LEN)
_SPAN_NAME, _SPAN_ATTRIBUTE, _SPAN_EVENT = _tag(5, _LEN), _tag(9, _LEN), _tag(11, _LEN)
_SPAN_KIND_INTERNAL = _tag(6, 0) + b"\x01"
_SPAN_TIMES = struct.Struct("<BQBQ")  # start_time_unix_nano (7), end_time_unix_nano (8)
_SPAN_START, _SPAN_END = 7 << 3 | _I64, 8 << 3 | _I64
_SPAN_LINK, _SPAN_STATUS = _tag(13, _LEN), _tag(15, _LEN)
# Span.flags (16, fixed32): the parent is known to be local, as the SDK says of its spans;
# a root whose parent is the caller's span says that parent is remote.
_FIXED32 = 5
_SPAN_FLAGS_LOCAL = _tag(16, _FIXED32) + struct.pack("<I", 0x100)
_SPAN_FLAGS_REMOTE = _tag(16, _FIXED32) + struct.pack("<I", 0x300)
_LINK_TRACE_ID, _LINK_SPAN_ID, _LINK_STATE = _tag(1, _LEN), _tag(2, _LEN), _tag(3, _LEN)
_LINK_ATTRIBUTE, _LINK_FLAGS = _tag(4, _LEN), _tag(6, _FIXED32)
_STATUS_UNSET = _SPAN_STATUS + b"\x00"
_STATUS_MESSAGE, _STATUS_CODE_ERROR = _tag(2, _LEN), _tag(3, 0) + b"\x02"
_EVENT_TIME = struct.Struct("<BQ")  # time_unix_nano (1)
_EVENT_TIME_TAG = 1 << 3 | _I64
_EVENT_NAME, _EVENT_ATTRIBUTE = _tag(2, _LEN), _tag(3, _LEN)
# Resource, ResourceSpans, ScopeSpans, ExportTraceServiceRequest
_RESOURCE_ATTRIBUTE = _tag(1, _LEN)
_RS_RESOURCE, _RS_SCOPE_SPANS = _tag(1, _LEN), _tag(2, _LEN)
_SS_SCOPE, _SS_SPAN = _tag(1, _LEN), _tag(2, _LEN)
_REQUEST_RESOURCE_SPANS = _tag(1, _LEN)
_DOUBLE = struct.Struct("<d")


def _any_value(value: AttrValue) -> bytes:
    """An AnyValue body: bool, int64, double or string (anything else as its str)."""
    if isinstance(value, str):
        return _field(_ANY_STRING, value.encode())
    if isinstance(value, bool):
        return _ANY_TRUE if value else _ANY_FALSE
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"attribute value {value} is outside the int64 range")
        return _ANY_INT + _varint(value)
    if isinstance(value, float):
        return _ANY_DOUBLE + _DOUBLE.pack(value)
    return _field(_ANY_STRING, str(value).encode())


def _key_value(key: str, value: AttrValue) -> bytes:
    """A KeyValue body."""
    body = _field(_KV_VALUE, _any_value(value))
    return _field(_KV_KEY, key.encode()) + body if key else body


class OTLPEncoder:
    """Writes traces as OTLP/protobuf; one encoder per sink (its caches are not shared).

    :meth:`resource_spans` gives one Pod's part of a request body; the body of an
    ``ExportTraceServiceRequest`` is the concatenation of such parts. Not thread-safe.
    """

    def __init__(self, service_name: str = "lunettes", cache_size: int = 4096) -> None:
        self._service = _field(_RESOURCE_ATTRIBUTE, _key_value("service.name", service_name))
        scope = _field(_SCOPE_NAME, SCOPE_NAME.encode()) + _field(_SCOPE_VERSION,
                                                                  __version__.encode())
        self._scope = _field(_SS_SCOPE, scope)
        self._cache_size = cache_size
        self._attributes: dict[tuple[bytes, str, AttrValue], bytes] = {}
        self._texts: dict[tuple[bytes, str], bytes] = {}

    def resource_spans(self, trace: Trace) -> bytes:
        """One Pod's ``ResourceSpans`` as a field of an ``ExportTraceServiceRequest``."""
        pod = [_key_value(key, value) for key, value in trace.pod_attributes]
        resource = self._service + b"".join([_field(_RESOURCE_ATTRIBUTE, kv) for kv in pod])
        pod_attributes = b"".join([_field(_SPAN_ATTRIBUTE, kv) for kv in pod])
        head = _field(_SPAN_TRACE_ID, trace.trace_id) if trace.trace_id else b""
        scope_spans = b"".join([self._scope, *[self._span(head, pod_attributes, span)
                                               for span in trace.spans]])
        body = _field(_RS_RESOURCE, resource) + _field(_RS_SCOPE_SPANS, scope_spans)
        return _field(_REQUEST_RESOURCE_SPANS, body)

    def _span(self, head: bytes, pod_attributes: bytes, span: Span) -> bytes:
        """A span as a field of ScopeSpans; ``head`` is its trace id field."""
        attribute = self._attribute
        parts = [head]
        if span.span_id:
            parts.append(_field(_SPAN_ID, span.span_id))
        if span.parent_span_id:
            parts.append(_field(_SPAN_PARENT, span.parent_span_id))
        if span.name:
            parts.append(self._text(_SPAN_NAME, span.name))
        parts.append(_SPAN_KIND_INTERNAL)
        try:
            parts.append(_SPAN_TIMES.pack(_SPAN_START, span.start_ns, _SPAN_END, span.end_ns))
        except struct.error:
            raise ValueError(f"span {span.name!r}: a time outside 0..2**64-1 ns") from None
        parts.append(pod_attributes)
        for key, value in span.attributes:
            parts.append(attribute(_SPAN_ATTRIBUTE, key, value))
        for event in span.events:
            parts.append(_field(_SPAN_EVENT, self._event(event)))
        for link in span.links:
            parts.append(_field(_SPAN_LINK, self._link(link)))
        if span.status == ERROR:
            message = span.status_message
            status = _field(_STATUS_MESSAGE, message.encode()) if message else b""
            parts.append(_field(_SPAN_STATUS, status + _STATUS_CODE_ERROR))
        else:
            parts.append(_STATUS_UNSET)
        parts.append(_SPAN_FLAGS_REMOTE if span.remote_parent else _SPAN_FLAGS_LOCAL)
        return _field(_SS_SPAN, b"".join(parts))

    def _link(self, link: Link) -> bytes:
        """A Span.Link body: the linked span is another process's (a remote context); the
        flags carry its W3C trace flags."""
        parts = [_field(_LINK_TRACE_ID, link.trace_id), _field(_LINK_SPAN_ID, link.span_id)]
        if link.trace_state:
            parts.append(_field(_LINK_STATE, link.trace_state.encode()))
        for key, value in link.attributes:
            parts.append(self._attribute(_LINK_ATTRIBUTE, key, value))
        parts.append(_LINK_FLAGS + struct.pack("<I", 0x300 | (link.flags & 0xFF)))
        return b"".join(parts)

    def _event(self, event: Event) -> bytes:
        """A Span.Event body."""
        try:
            parts = [_EVENT_TIME.pack(_EVENT_TIME_TAG, event.time_ns)]
        except struct.error:
            raise ValueError(f"event {event.name!r}: a time outside 0..2**64-1 ns") from None
        if event.name:
            parts.append(self._text(_EVENT_NAME, event.name))
        for key, value in event.attributes:
            parts.append(self._attribute(_EVENT_ATTRIBUTE, key, value))
        return b"".join(parts)

    def _attribute(self, tag: bytes, key: str, value: AttrValue) -> bytes:
        """A KeyValue field; string and bool ones from the cache."""
        kind = type(value)
        if kind is not str and kind is not bool:  # 1 == 1.0 == True: only these two cached
            return _field(tag, _key_value(key, value))
        cache = self._attributes
        found = cache.get((tag, key, value))
        if found is None:
            if len(cache) >= self._cache_size:
                cache.clear()
            found = cache[tag, key, value] = _field(tag, _key_value(key, value))
        return found

    def _text(self, tag: bytes, text: str) -> bytes:
        """A string field, from the cache."""
        cache = self._texts
        found = cache.get((tag, text))
        if found is None:
            if len(cache) >= self._cache_size:
                cache.clear()
            found = cache[tag, text] = _field(tag, text.encode())
        return found
