"""The few fields of an audit Event the load analysis needs, decoded by msgspec.

:func:`read` decodes a line into typed fields (verb, URI, user, userAgent, objectRef,
code, the two timestamps and the annotations); msgspec skips the rest (the bodies, most
of a RequestResponse line) without building it. It answers :data:`UNREADABLE` whenever
msgspec refuses the line (not JSON, not one audit.k8s.io/v1 Event, a field of another
type); such lines are decoded by ``orjson`` and read by :func:`facts_from_event`, the
reference this fast path is tested against.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

import msgspec
from msgspec import Raw, Struct

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


class Unreadable:
    """msgspec refused the line: decode it."""


UNREADABLE: Final = Unreadable()
NOT_FINAL: Final = None
""":func:`scan` of a record whose stage is not final (RequestReceived, ResponseStarted)."""

_LONG_RUNNING_SUB = frozenset({"exec", "attach", "portforward", "proxy"})
_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_US = {"ns": 0.001, "us": 1.0, "µs": 1.0, "μs": 1.0, "ms": 1e3, "s": 1e6, "m": 6e7,
            "h": 3.6e9}


class _User(Struct, gc=False):
    username: str = ""


class _ObjectRef(Struct, gc=False):
    resource: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""


class _Status(Struct, gc=False):
    code: int = 0


class Event(Struct, gc=False):
    """The fields read, named as the audit Event names them."""

    kind: str
    apiVersion: str
    auditID: str = ""
    stage: str = ""
    requestURI: str = ""
    verb: str = ""
    user: _User | None = None
    userAgent: str = ""
    objectRef: _ObjectRef | None = None
    responseStatus: _Status | None = None
    requestReceivedTimestamp: str = ""
    stageTimestamp: str | None = None
    annotations: Raw = Raw()  # decoded only when it holds the APF queue wait


_decode = msgspec.json.Decoder(Event).decode
_decode_notes = msgspec.json.Decoder(dict[str, Any]).decode
_NO_USER, _NO_REF, _NO_STATUS = _User(), _ObjectRef(), _Status()
_APF_KEY = APF_QUEUE_WAIT.encode()

Key = tuple[str, str, str, str, str, str, str, str, int, str]
"""A request's fields but its times: uri, verb, user, userAgent, resource, namespace,
name, subresource, code and the APF queue wait's text (see :func:`read`)."""


def decode(raw: bytes) -> Event | Unreadable:
    """The fields of one audit.k8s.io/v1 Event line; :data:`UNREADABLE` when msgspec
    refuses it (not JSON, another kind or version, a field of another type)."""
    try:
        event = _decode(raw)
    except msgspec.MsgspecError:
        return UNREADABLE
    if event.kind != "Event" or event.apiVersion != "audit.k8s.io/v1":
        return UNREADABLE
    return event


def request(event: Event) -> tuple[Key, int, int | None] | Unreadable | None:
    """A decoded line's request: its :data:`Key`, its requestReceivedTimestamp and its
    stageTimestamp (None when absent or not a time) in microseconds; None
    (:data:`NOT_FINAL`) for a stage that is not final; :data:`UNREADABLE` when its arrival
    time is not a time or its annotations not an object."""
    if event.stage not in FINAL_STAGES:
        return NOT_FINAL
    received_text = event.requestReceivedTimestamp
    try:
        received = parse_time(received_text)
    except ValueError:
        return UNREADABLE
    user = event.user or _NO_USER
    ref = event.objectRef or _NO_REF
    wait = ""
    if _APF_KEY in bytes(event.annotations):
        try:
            wait = _decode_notes(event.annotations).get(APF_QUEUE_WAIT, "")
        except msgspec.ValidationError:  # not an object: the decoder reads it
            return UNREADABLE
    key = (event.requestURI, event.verb, user.username, event.userAgent, ref.resource,
           ref.namespace, ref.name, ref.subresource, (event.responseStatus or _NO_STATUS).code,
           wait if type(wait) is str else "")
    return key, received, _later(received, received_text, event.stageTimestamp)


def read(raw: bytes) -> tuple[Key, int, int | None] | Unreadable | None:
    """:func:`request` of :func:`decode`."""
    event = decode(raw)
    return event if isinstance(event, Unreadable) else request(event)


def facts_of(key: Key, received: int, stage_at: int | None) -> RequestFacts:
    """The facts of :func:`read`'s reading."""
    uri, verb, user, agent, resource, namespace, name, sub, code, wait = key
    return _facts(received, stage_at, verb, uri, user, agent, resource, sub, namespace, name,
                  code, wait)


def is_timed(verb: str, subresource: str) -> bool:
    """True when a request's latency counts: not a watch nor a long-running
    subresource (exec, attach, portforward, proxy)."""
    return verb != "watch" and subresource not in _LONG_RUNNING_SUB


def scan(raw: bytes) -> RequestFacts | Unreadable | None:
    """The facts of one audit line; None (:data:`NOT_FINAL`) for a stage that is not final;
    :data:`UNREADABLE` when msgspec refuses the line (see :func:`read`)."""
    got = read(raw)
    if got is None or isinstance(got, Unreadable):
        return got
    return facts_of(*got)


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
