"""The few fields of an audit Event the load analysis needs, read from the bytes of a line.

kube-apiserver writes every audit.k8s.io/v1 line in one field order: ``kind, apiVersion,
level, auditID, stage, requestURI, verb, user, impersonatedUser, sourceIPs, userAgent,
objectRef, responseStatus, requestObject, responseObject, requestReceivedTimestamp,
stageTimestamp, annotations``. A JSON string holds no unescaped quote, so a key pattern such
as ``,"requestObject":`` cannot be faked by a value; the metadata fields come before the
first body, and the two timestamps and the annotations after the bodies. So the line is cut
at its first body and at its last ``requestReceivedTimestamp``, and only the two ends are
decoded. :func:`scan` answers :data:`UNREADABLE` whenever the bytes do not tell for sure
(another shape or version, an escape in a value, a line that is not one whole object); such
lines are decoded and read by :func:`facts_from_event`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final, NamedTuple

from orjson import JSONDecodeError, loads

from lunettes.model.times import parse_time

FINAL_STAGES: Final = frozenset({"ResponseComplete", "Panic"})
APF_QUEUE_WAIT: Final = "apiserver.latency.k8s.io/apf-queue-wait"
"""The only API Priority and Fairness audit annotation kube-apiserver writes (1.31+); the
flow schema and priority level go to response headers and the httplog, not the audit log."""


class RequestFacts(NamedTuple):
    """One finished API request. Strings are empty when absent; times in microseconds."""

    time_us: int
    verb: str
    uri: str
    user: str
    user_agent: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    latency_us: int | None
    apf_wait_us: int | None


class _Unreadable:
    """The bytes do not tell: decode the line."""


UNREADABLE: Final = _Unreadable()
NOT_FINAL: Final = None
""":func:`scan` of a record whose stage is not final (RequestReceived, ResponseStarted)."""

_HEAD = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",'
_STAGE_KEY = b',"stage":"'
_BODIES = (b',"requestObject":', b',"responseObject":')
_RECEIVED = b',"requestReceivedTimestamp":"'
_WHOLE = (b"}\n", b"}", b"}\r\n")
_APF_KEY = APF_QUEUE_WAIT.encode()
_FINAL = (b"ResponseComplete", b"Panic")
_LONG_RUNNING_SUB = frozenset({"exec", "attach", "portforward", "proxy"})
_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_US = {"ns": 0.001, "us": 1.0, "µs": 1.0, "μs": 1.0, "ms": 1e3, "s": 1e6, "m": 6e7,
            "h": 3.6e9}


_STRING = rb'"([^"\\]*)"'  # a JSON string without escapes, captured
_SKIP = rb'"[^"\\]*"'
_URI = rb'"([^"\\]*(?:\\u00(?:26|3c|3e)[^"\\]*)*)"'  # Go escapes &, <, > in JSON
_OBJ = rb'[^{}]*(?:\{[^{}]*\}[^{}]*)?\}'  # the rest of an object, one nested level
_STAMP = rb'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z"'
_FIELDS = re.compile(
    rb'\{"kind":"Event","apiVersion":"audit\.k8s\.io/v1","level":"[A-Za-z]+","auditID":'
    + _SKIP + rb',"stage":"(?:ResponseComplete|Panic)","requestURI":' + _URI
    + rb',"verb":"([a-z]+)","user":\{(?:"username":' + _STRING + rb')?' + _OBJ
    + rb'(?:,"impersonatedUser":\{' + _OBJ + rb')?(?:,"sourceIPs":\[[^\]]*\])?'
    rb'(?:,"userAgent":' + _STRING + rb')?'
    rb'(?:,"objectRef":\{"resource":' + _STRING + rb'(?:,"namespace":' + _STRING
    + rb')?(?:,"name":' + _STRING + rb')?(?:,"uid":' + _SKIP + rb')?(?:,"apiGroup":' + _SKIP
    + rb')?(?:,"apiVersion":' + _SKIP + rb')?(?:,"resourceVersion":' + _SKIP
    + rb')?(?:,"subresource":' + _STRING + rb')?\})?'
    rb',"responseStatus":\{"metadata":\{\}(?:,"status":' + _SKIP + rb')?(?:,"message":'
    + _SKIP + rb')?(?:,"reason":' + _SKIP + rb')?,"code":(\d{1,3})\}[,}]')
"""The fields of a final line as kube-apiserver writes it, up to its first body."""
_TIMES = re.compile(rb'"requestReceivedTimestamp":' + _STAMP + rb'(?:,"stageTimestamp":'
                    + _STAMP + rb')?[,}]')
"""Its timestamps, after the bodies."""
_MINUTES: dict[bytes, int] = {}


@lru_cache(maxsize=4096)
def _second_us(text: bytes) -> int:
    """:func:`_seconds` in microseconds, each second's text parsed once."""
    return _seconds(text) * 1_000_000


def _seconds(text: bytes) -> int:
    """``2026-01-02T03:04:05`` (checked digits) in seconds since the epoch: each minute
    parsed once, then its seconds added."""
    minute = _MINUTES.get(text[:16])
    if minute is None:
        minute = parse_time(text[:16].decode() + ":00Z") // 1_000_000
        if len(_MINUTES) > 4096:
            _MINUTES.clear()
        _MINUTES[text[:16]] = minute
    seconds = int(text[17:19])
    if seconds > 59:
        raise ValueError(f"{text!r}: not a time")
    return minute + seconds


RawKey = tuple[bytes, ...]
"""A request's fields as bytes: uri, verb, user, userAgent, resource, namespace, name,
subresource, code (see :func:`raw_request`)."""


def raw_request(raw: bytes) -> tuple[RawKey, int, int | None] | None:
    """A final line exactly as kube-apiserver writes it (one whole object, values free of
    escapes but Go's ``\\u0026`` for ``&`` and the like in the URI, no annotation of the
    APF queue wait), read from its bytes alone by two regular expressions: its
    fields undecoded, its requestReceivedTimestamp and its stageTimestamp (None when
    absent) in microseconds; None for any other line."""
    fields = _FIELDS.match(raw)
    if fields is None or not raw.endswith(_WHOLE):
        return None
    tail = raw.rfind(_RECEIVED)
    times = _TIMES.match(raw, tail + 1) if tail > 0 else None
    if times is None or raw.find(_APF_KEY, tail) >= 0:
        return None
    received_s, fraction, stage_s, stage_fraction = times.groups()
    try:
        second = _second_us(received_s)
        received = second + int(fraction)
        if stage_s is None:
            return fields.groups(b""), received, None
        stage_at = (second if stage_s == received_s else _second_us(stage_s)) + int(
            stage_fraction)
    except ValueError:
        return None  # not a date: the decoder says why
    return fields.groups(b""), received, stage_at


def request_uri(raw: bytes) -> str:
    """The request URI of :func:`raw_request`'s reading, Go's escapes of ``&<>`` read."""
    uri = raw.decode()
    if "\\" in uri:
        uri = uri.replace("\\u0026", "&").replace("\\u003c", "<").replace("\\u003e", ">")
    return uri


def facts_of(key: RawKey, received: int, stage_at: int | None) -> RequestFacts | None:
    """The facts of :func:`raw_request`'s reading (None when a value is not UTF-8)."""
    uri, verb, user, agent, resource, namespace, name, sub, code = key
    try:
        return _facts(received, stage_at, verb.decode(), request_uri(uri), user.decode(),
                      agent.decode(), resource.decode(), sub.decode(), namespace.decode(),
                      name.decode(), int(code), "")
    except UnicodeDecodeError:
        return None


def is_timed(verb: str, subresource: str) -> bool:
    """True when a request's latency counts: not a watch nor a long-running
    subresource (exec, attach, portforward, proxy)."""
    return verb != "watch" and subresource not in _LONG_RUNNING_SUB


def scan(raw: bytes) -> RequestFacts | _Unreadable | None:
    """The facts of one audit line; None (:data:`NOT_FINAL`) for a stage that is not final;
    :data:`UNREADABLE` when the bytes do not tell.

    A line exactly as kube-apiserver writes it is read by two regular expressions (its
    metadata, then its timestamps after the bodies); any other is cut before its bodies
    and after them, and only the metadata and the timestamps and annotations are decoded
    (two small ``orjson`` calls). The bodies, most of a RequestResponse line, are never
    read.
    """
    read = raw_request(raw)
    if read is not None:
        fast = facts_of(*read)
        if fast is not None:
            return fast
    return scan_decoding(raw)


def scan_decoding(raw: bytes) -> RequestFacts | _Unreadable | None:
    """:func:`scan` without reading the line as kube-apiserver writes it first: the line
    cut before and after its bodies, the two ends decoded."""
    if not raw.startswith(_HEAD) or not raw.endswith(_WHOLE):
        return UNREADABLE
    at = raw.find(_STAGE_KEY, len(_HEAD), 200)
    if at < 0:
        return UNREADABLE
    at += len(_STAGE_KEY)
    if raw[at:raw.find(b'"', at)] not in _FINAL:
        return NOT_FINAL
    tail = raw.rfind(_RECEIVED)  # the last of its name: after the bodies
    if tail < 0:
        return UNREADABLE
    end = tail
    for key in _BODIES:
        found = raw.find(key, at, tail)
        if found >= 0:
            end = found
            break
    try:
        event = loads(raw[:end] + b"}")
        event.update(loads(b"{" + raw[tail + 1:]))
    except JSONDecodeError:
        return UNREADABLE
    return facts_from_event(event)


def _facts(received: int, stage_at: int | None, verb: str, uri: str, user: str, agent: str,
           resource: str, subresource: str, namespace: str, name: str, code: int,
           wait: str) -> RequestFacts:
    latency = None
    if stage_at is not None and is_timed(verb, subresource):
        latency = max(0, stage_at - received)
    return RequestFacts(received, verb, uri, user, agent, resource, subresource, namespace,
                        name, code, latency, go_duration_us(wait) if wait else None)


def go_duration_us(text: str) -> int | None:
    """A Go ``time.Duration`` string (``"1.5ms"``, ``"2m3.1s"``, ``"100ns"``) in
    microseconds; None when it is not one."""
    total, at = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != at:
            return None
        total += float(match.group(1)) * _UNIT_US[match.group(2)]
        at = match.end()
    if at != len(text) or at == 0:
        return None
    return round(total)


def facts_from_event(event: dict[str, Any]) -> RequestFacts | None:
    """The facts of a decoded audit Event; None for a stage that is not final or an event
    without a usable requestReceivedTimestamp. Fields of another type read as absent."""
    get = event.get
    if get("stage") not in FINAL_STAGES:
        return None
    received_text, stage_text = get("requestReceivedTimestamp"), get("stageTimestamp")
    try:
        received = parse_time(received_text)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return None
    stage_at = _later(received, received_text, stage_text)
    user, ref, status = get("user", _EMPTY), get("objectRef", _EMPTY), get(
        "responseStatus", _EMPTY)
    if type(user) is not dict:
        user = _EMPTY
    if type(ref) is not dict:
        ref = _EMPTY
    code = status.get("code", 0) if type(status) is dict else 0
    notes = get("annotations")
    wait = notes.get(APF_QUEUE_WAIT, "") if type(notes) is dict else ""
    texts = [get("verb", ""), get("requestURI", ""), user.get("username", ""),
             get("userAgent", ""), ref.get("resource", ""), ref.get("subresource", ""),
             ref.get("namespace", ""), ref.get("name", ""), wait]
    for i, text in enumerate(texts):
        if type(text) is not str:
            texts[i] = ""
    verb, uri, username, agent, resource, subresource, namespace, name, wait = texts
    return _facts(received, stage_at, verb, uri, username, agent, resource, subresource,
                  namespace, name, code if type(code) is int else 0, wait)


def _later(received: int, received_text: Any, text: Any) -> int | None:
    """The stageTimestamp in microseconds (the common case, in the same second as the
    request's arrival, without parsing); None when absent or not a time."""
    if type(text) is not str:
        return None
    if len(text) == 27 and text[:20] == received_text[:20] and text[26] == "Z" \
            and text[20:26].isdigit():
        return received - received % 1_000_000 + int(text[20:26])
    try:
        return parse_time(text)
    except ValueError:
        return None


_EMPTY: dict[str, Any] = {}
