"""A corpus of bad audit lines, each with the reason lunettes must count it under.

Every kind is written by hand from what it breaks: a line that is not JSON, a document of
the wrong shape, an envelope field or a body field the folder reads set to a wrong type,
a time that cannot be represented, a record far ahead of the audit clock. Body mutations
start from real records of the bundled sample (a Pod's create, a kubelet's status patch,
an Event, a binding) and get an auditID of their own, so each is one more record about a
Pod of the sample, which lunettes must refuse whole.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import lunettes

SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"
MAX_LINE_BYTES = 1 << 20
"""The line limit the corpus runs with (the oversize kind is just over it)."""


@dataclass(frozen=True)
class Kind:
    """One kind of bad input: ``line`` (bytes, with its newline) to insert after line
    ``after`` of the base log, and the ``reason`` it must be counted under."""

    name: str
    line: bytes
    reason: str
    after: int


def sample_lines() -> list[bytes]:
    return gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)


def _first(lines: list[bytes], test: Callable[[dict[str, Any]], bool]) -> int:
    for index, raw in enumerate(lines):
        doc = orjson.loads(raw)
        if doc.get("stage") == "ResponseComplete" and test(doc):
            return index
    raise LookupError("no such template in the sample")


def _ref(doc: dict[str, Any]) -> tuple[str, str, str]:
    ref = doc.get("objectRef") or {}
    return ref.get("resource", ""), ref.get("subresource", ""), doc.get("verb", "")


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    if value is _DELETE:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


_DELETE = object()
_DEEP = object()
"""A value nested 900 arrays deep (written into the line after serialising it)."""


def _nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


def kinds(lines: list[bytes]) -> list[Kind]:
    """Every kind, against the base log ``lines`` (the sample, or its beginning)."""
    create = _first(lines, lambda d: _ref(d) == ("pods", "", "create")
                    and (d.get("responseObject") or {}).get("spec") is not None)
    status = _first(lines, lambda d: _ref(d) == ("pods", "status", "patch")
                    and "containerStatuses" in ((d.get("responseObject") or {})
                                                .get("status") or {})
                    and "lastState" in d["responseObject"]["status"]["containerStatuses"][0])
    event = _first(lines, lambda d: _ref(d) == ("events", "", "create")
                   and ((d.get("requestObject") or {}).get("regarding") or {})
                   .get("kind") == "Pod")
    binding = _first(lines, lambda d: _ref(d) == ("pods", "binding", "create"))
    lease = _first(lines, lambda d: _ref(d)[0] == "leases")
    out: list[Kind] = []

    def mutated(name: str, template: int, path: tuple[Any, ...], value: Any,
                reason: str) -> None:
        doc = orjson.loads(lines[template])
        doc["auditID"] = f"hostile-{len(out)}"
        _set(doc, path, value)
        line = orjson.dumps(doc, default=lambda v: "DEEP") + b"\n"  # orjson writes 254 deep
        out.append(Kind(name, line.replace(b'"DEEP"', _nested(900)), reason, template + 1))

    def raw(name: str, line: bytes, reason: str, after: int = create + 1) -> None:
        out.append(Kind(name, line, reason, after))

    # -- not JSON lines ---------------------------------------------------------------
    base = lines[status]
    raw("garbage text", b"garbage\n", "invalid_json")
    raw("truncated line", base[: len(base) // 2] + b"\n", "invalid_json")
    raw("line cut by a CR LF", base[:200] + b"\r\n", "invalid_json")
    raw("NUL bytes", base[:100] + b"\x00\x00" + base[100:], "invalid_json")
    raw("raw control character in a string", base.replace(b'"patch"', b'"pa\x01tch"'),
        "invalid_json")
    raw("invalid UTF-8", base.replace(b'"patch"', b'"pa\xff\xfetch"'), "invalid_json")
    raw("lone surrogate escape", base.replace(b'"patch"', b'"pa\\ud800tch"'),
        "invalid_json")
    raw("UTF-16 line", base.decode().encode("utf-16-le").replace(b"\n\x00", b"") + b"\n",
        "invalid_json")
    raw("byte order mark mid-file", b"\xef\xbb\xbf" + base, "invalid_json")
    raw("binary garbage", bytes(range(11, 256)) * 4 + b"\n", "invalid_json")
    raw("gzip bytes in a line", gzip.compress(base).replace(b"\n", b"") + b"\n",
        "invalid_json")
    raw("NaN", base.replace(b'"code":200', b'"code":NaN'), "invalid_json")
    raw("Infinity", base.replace(b'"code":200', b'"code":Infinity'), "invalid_json")
    raw("integer beyond 64 bits (read as a float)",
        base.replace(b'"code":200', b'"code":' + b"9" * 30), "wrong_type:responseStatus.code")
    raw("a body integer beyond 64 bits (read as a float)",
        re.sub(rb'"auditID":"[^"]*"', b'"auditID":"hostile-wide"', re.sub(
            rb'("responseObject".*"restartCount":)[0-9]+', rb"\g<1>" + b"9" * 30, base,
            count=1), count=1),
        "wrong_type:status.containerStatuses[].restartCount")
    raw("trailing comma", base.rstrip().rstrip(b"}") + b",}\n", "invalid_json")
    raw("two objects on one line", base.rstrip() + base, "invalid_json")
    raw("single quotes", b"{'kind': 'Event'}\n", "invalid_json")
    raw("arrays nested 100000 deep", _nested(100_000) + b"\n", "too_deep")
    raw("unclosed object", b'{"kind":"Event","apiVersion":"audit.k8s.io/v1"\n',
        "invalid_json")
    raw("line over the size limit", b'{"kind":"Event","x":"' + b"a" * MAX_LINE_BYTES
        + b'"}\n', "line_too_long")
    # -- JSON of the wrong shape ------------------------------------------------------
    raw("null", b"null\n", "not_an_object")
    raw("a number", b"42\n", "not_an_object")
    raw("a string", b'"Event"\n', "not_an_object")
    raw("true", b"true\n", "not_an_object")
    raw("an empty array", b"[]\n", "empty_document")
    raw("an array of a number", b"[1]\n", "not_an_object")
    raw("an empty object", b"{}\n", "unknown_kind")
    raw("nested arrays 1000 deep", _nested(1000) + b"\n", "too_deep")
    raw("nested arrays 1000 deep around an Event", _nested(1000, base.rstrip()) + b"\n",
        "too_deep")
    raw("an EventList of a string", b'{"kind":"EventList","items":"x"}\n',
        "wrong_type:items")
    raw("an EventList of numbers", b'{"kind":"EventList","items":[5]}\n', "not_an_object")
    raw("an Event of another API", base.replace(b'"audit.k8s.io/v1"', b'"audit.k8s.io/v2"',
                                                1), "unknown_kind")
    raw("a Pod, not an audit Event", b'{"kind":"Pod","apiVersion":"v1"}\n', "unknown_kind")
    raw("duplicate kind keys, the last a Pod",
        base.replace(b'{"kind":"Event",', b'{"kind":"Event","kind":"Pod",', 1),
        "unknown_kind")
    raw("a resource log wrapping a number",
        b'{"category":"kube-audit","properties":{"log":5}}\n', "wrong_type:log")
    raw("a resource log wrapping bad JSON",
        b'{"category":"kube-audit","properties":{"log":"{oops"}}\n', "invalid_json:log")
    raw("resource logs wrapped 20 deep",
        b'{"category":"kube-audit","properties":{"log":' * 20 + b"{}" + b"}}" * 20 + b"\n",
        "too_deep")
    raw("a Cloud Logging entry with a mistyped status",
        b'{"protoPayload":{"methodName":"io.k8s.core.v1.pods.status.patch",'
        b'"status":"x"},"timestamp":"2026-01-01T00:00:10Z"}\n',
        "wrong_type:protoPayload.status")
    raw("a Cloud Logging entry with a mistyped principal",
        b'{"protoPayload":{"methodName":"io.k8s.core.v1.pods.status.patch",'
        b'"authenticationInfo":{"principalEmail":5}},"timestamp":"2026-01-01T00:00:10Z"}\n',
        "wrong_type:protoPayload.authenticationInfo.principalEmail")
    # -- the audit envelope -----------------------------------------------------------
    for field, value, reason in (
        ("apiVersion", [], "unknown_kind"),
        ("apiVersion", {}, "unknown_kind"),
        ("kind", 5, "unknown_kind"),
        ("auditID", 5, "wrong_type:auditID"),
        ("auditID", _DELETE, "missing_field:auditID"),
        ("stage", 5, "wrong_type:stage"),
        ("stage", _DELETE, "missing_field:stage"),
        ("verb", [], "wrong_type:verb"),
        ("level", 5, "wrong_type:level"),
        ("userAgent", {}, "wrong_type:userAgent"),
        ("user", "x", "wrong_type:user"),
        ("objectRef", "x", "wrong_type:objectRef"),
        ("responseStatus", 5, "wrong_type:responseStatus"),
        ("requestReceivedTimestamp", _DELETE, "missing_field:requestReceivedTimestamp"),
        ("requestReceivedTimestamp", 5, "wrong_type:requestReceivedTimestamp"),
        ("requestReceivedTimestamp", "yesterday", "bad_timestamp"),
        ("requestReceivedTimestamp", "2026-13-45T25:61:61.000000Z", "bad_timestamp"),
        ("requestReceivedTimestamp", "2026-01-01T00:00:10.12x456Z", "bad_timestamp"),
        ("requestReceivedTimestamp", "2026-01-01T00:00:10.\u0663\u0663Z", "bad_timestamp"),
        ("requestReceivedTimestamp", "10000-01-01T00:00:00Z", "bad_timestamp"),
        ("requestReceivedTimestamp", "0000-01-01T00:00:00Z", "bad_timestamp"),
        ("requestReceivedTimestamp", "9999-12-31T23:59:59-01:00", "bad_timestamp"),
        ("requestReceivedTimestamp", "0001-01-01T00:30:00+01:00", "bad_timestamp"),
        ("requestReceivedTimestamp", "2099-01-01T00:00:00.000000Z", "future_timestamp"),
    ):
        mutated(f"envelope {field}={value!r}", status, (field,), value, reason)
    for path, value, reason in (
        (("objectRef", "name"), 5, "wrong_type:name"),
        (("objectRef", "resource"), [], "wrong_type:resource"),
        (("objectRef", "subresource"), {}, "wrong_type:subresource"),
        (("objectRef", "namespace"), 1.5, "wrong_type:namespace"),
        (("responseStatus", "code"), "200", "wrong_type:responseStatus.code"),
        (("responseStatus", "code"), True, "wrong_type:responseStatus.code"),
        (("responseStatus", "code"), 200.5, "wrong_type:responseStatus.code"),
        (("user", "username"), 5, "wrong_type:username"),
    ):
        mutated(f"envelope {'.'.join(path)}={value!r}", status, path, value, reason)
    # -- a kubelet's status patch -----------------------------------------------------
    s = ("responseObject", "status")
    c = (*s, "conditions")
    cs = (*s, "containerStatuses")
    for path, value, reason in (
        (("responseObject",), "x", "wrong_type:responseObject"),
        (("responseObject",), [], "wrong_type:responseObject"),
        (("requestObject",), 5, "wrong_type:requestObject"),
        (("responseObject", "metadata"), "x", "wrong_type:metadata"),
        (("responseObject", "metadata", "uid"), 5, "wrong_type:metadata.uid"),
        (s, "x", "wrong_type:status"),
        (s, [], "wrong_type:status"),
        (c, 5, "wrong_type:status.conditions"),
        (c, "x", "wrong_type:status.conditions"),
        (c, {"type": "Ready"}, "wrong_type:status.conditions"),
        (c, [5], "wrong_type:status.conditions[]"),
        (c, [[]], "wrong_type:status.conditions[]"),
        (c, [{"type": 5}], "wrong_type:status.conditions[].type"),
        (c, [{"type": "Ready", "status": True}], "wrong_type:status.conditions[].status"),
        (c, [{"type": "Ready", "reason": []}], "wrong_type:status.conditions[].reason"),
        (c, [{"type": "Ready", "message": {}}], "wrong_type:status.conditions[].message"),
        (cs, "x", "wrong_type:status.containerStatuses"),
        (cs, [7], "wrong_type:status.containerStatuses[]"),
        ((*cs, 0, "name"), 5, "wrong_type:status.containerStatuses[].name"),
        ((*cs, 0, "state"), "x", "wrong_type:status.containerStatuses[].state"),
        ((*cs, 0, "state"), {"running": "x"},
         "wrong_type:status.containerStatuses[].state.running"),
        ((*cs, 0, "state"), {"waiting": {"reason": 5}},
         "wrong_type:status.containerStatuses[].state.waiting.reason"),
        ((*cs, 0, "state"), {"waiting": {"message": []}},
         "wrong_type:status.containerStatuses[].state.waiting.message"),
        ((*cs, 0, "state"), {"terminated": {"exitCode": "x"}},
         "wrong_type:status.containerStatuses[].state.terminated.exitCode"),
        ((*cs, 0, "state"), {"terminated": {"exitCode": 1.5}},
         "wrong_type:status.containerStatuses[].state.terminated.exitCode"),
        ((*cs, 0, "restartCount"), "x", "wrong_type:status.containerStatuses[].restartCount"),
        ((*cs, 0, "restartCount"), 1.5,
         "wrong_type:status.containerStatuses[].restartCount"),
        ((*cs, 0, "restartCount"), True,
         "wrong_type:status.containerStatuses[].restartCount"),
        ((*cs, 0, "ready"), "yes", "wrong_type:status.containerStatuses[].ready"),
        ((*cs, 0, "ready"), 1, "wrong_type:status.containerStatuses[].ready"),
        ((*cs, 0, "image"), 5, "wrong_type:status.containerStatuses[].image"),
        ((*cs, 0, "lastState"), "x", "wrong_type:status.containerStatuses[].lastState"),
        ((*cs, 0, "lastState"), {"terminated": 5},
         "wrong_type:status.containerStatuses[].lastState.terminated"),
        ((*cs, 0, "lastState"), {"terminated": {"exitCode": "x"}},
         "wrong_type:status.containerStatuses[].lastState.terminated.exitCode"),
        ((*s, "initContainerStatuses"), 5, "wrong_type:status.initContainerStatuses"),
        ((*s, "phase"), 5, "wrong_type:status.phase"),
        ((*s, "podIP"), [], "wrong_type:status.podIP"),
        ((*s, "reason"), {}, "wrong_type:status.reason"),
        ((*s, "message"), 5, "wrong_type:status.message"),
    ):
        mutated(f"status {'.'.join(map(str, path[1:]))}={value!r}", status, path, value,
                reason)
    # -- a Pod's create ---------------------------------------------------------------
    m = ("responseObject", "metadata")
    p = ("responseObject", "spec")
    ct = (*p, "containers")
    for path, value, reason in (
        ((*m, "name"), 5, "wrong_type:metadata.name"),
        ((*m, "namespace"), [], "wrong_type:metadata.namespace"),
        ((*m, "uid"), {}, "wrong_type:metadata.uid"),
        ((*m, "labels"), "x", "wrong_type:metadata.labels"),
        ((*m, "labels"), [], "wrong_type:metadata.labels"),
        ((*m, "labels"), {"app": {}}, "wrong_type:metadata.labels.*"),
        ((*m, "labels"), {"app": ["a"]}, "wrong_type:metadata.labels.*"),
        ((*m, "labels"), {"app": _DEEP}, "wrong_type:metadata.labels.*"),
        ((*m, "ownerReferences"), "x", "wrong_type:metadata.ownerReferences"),
        ((*m, "ownerReferences"), {}, "wrong_type:metadata.ownerReferences"),
        ((*m, "ownerReferences"), [5], "wrong_type:metadata.ownerReferences[]"),
        ((*m, "ownerReferences"), [{"controller": "yes"}],
         "wrong_type:metadata.ownerReferences[].controller"),
        ((*m, "ownerReferences"), [{"kind": 5}], "wrong_type:metadata.ownerReferences[].kind"),
        ((*m, "ownerReferences"), [{"name": []}],
         "wrong_type:metadata.ownerReferences[].name"),
        (p, "x", "wrong_type:spec"),
        (p, 5, "wrong_type:spec"),
        (p, [], "wrong_type:spec"),
        (ct, "x", "wrong_type:spec.containers"),
        (ct, {}, "wrong_type:spec.containers"),
        (ct, [5], "wrong_type:spec.containers[]"),
        (ct, [{"name": 5}], "wrong_type:spec.containers[].name"),
        (ct, [{"image": []}], "wrong_type:spec.containers[].image"),
        (ct, [{"resources": "x"}], "wrong_type:spec.containers[].resources"),
        (ct, [{"resources": {"requests": "x"}}],
         "wrong_type:spec.containers[].resources.requests"),
        (ct, [{"resources": {"requests": {"cpu": {}}}}],
         "wrong_type:spec.containers[].resources.requests.*"),
        (ct, [{"resources": {"limits": []}}], "wrong_type:spec.containers[].resources.limits"),
        ((*p, "initContainers"), 5, "wrong_type:spec.initContainers"),
        ((*p, "initContainers"), [{"name": {}}], "wrong_type:spec.initContainers[].name"),
        ((*p, "volumes"), "x", "wrong_type:spec.volumes"),
        ((*p, "volumes"), [5], "wrong_type:spec.volumes[]"),
        ((*p, "volumes"), [{"name": 5, "emptyDir": {}}], "wrong_type:spec.volumes[].name"),
        ((*p, "affinity"), "x", "wrong_type:spec.affinity"),
        ((*p, "affinity"), 5, "wrong_type:spec.affinity"),
        ((*p, "nodeName"), 5, "wrong_type:spec.nodeName"),
        ((*p, "schedulerName"), [], "wrong_type:spec.schedulerName"),
        ((*p, "priority"), "x", "wrong_type:spec.priority"),
        ((*p, "priority"), 1.5, "wrong_type:spec.priority"),
        ((*p, "priority"), True, "wrong_type:spec.priority"),
        ((*p, "priorityClassName"), 5, "wrong_type:spec.priorityClassName"),
        ((*p, "readinessGates"), "x", "wrong_type:spec.readinessGates"),
        ((*p, "readinessGates"), [5], "wrong_type:spec.readinessGates[]"),
        ((*p, "readinessGates"), [{"conditionType": 5}],
         "wrong_type:spec.readinessGates[].conditionType"),
        ((*p, "restartPolicy"), 5, "wrong_type:spec.restartPolicy"),
    ):
        mutated(f"create {'.'.join(map(str, path[1:]))}={value!r}", create, path, value,
                reason)
    # -- an Event about a Pod ---------------------------------------------------------
    e = ("requestObject",)
    r = (*e, "regarding")
    for path, value, reason in (
        (r, "x", "wrong_type:regarding"),
        ((*e, "involvedObject"), 5, "wrong_type:involvedObject"),
        ((*r, "kind"), 5, "wrong_type:regarding.kind"),
        ((*r, "name"), [], "wrong_type:regarding.name"),
        ((*r, "uid"), {}, "wrong_type:regarding.uid"),
        ((*r, "namespace"), 5, "wrong_type:regarding.namespace"),
        ((*r, "fieldPath"), 5, "wrong_type:regarding.fieldPath"),
        ((*e, "reason"), 5, "wrong_type:reason"),
        ((*e, "type"), [], "wrong_type:type"),
        ((*e, "note"), {}, "wrong_type:note"),
        ((*e, "series"), "x", "wrong_type:series"),
        ((*e, "series"), {"count": "x"}, "wrong_type:series.count"),
        ((*e, "reportingController"), 5, "wrong_type:reportingController"),
    ):
        mutated(f"event {'.'.join(path[1:])}={value!r}", event, path, value, reason)
    # -- a binding --------------------------------------------------------------------
    mutated("binding target='x'", binding, ("requestObject", "target"), "x",
            "wrong_type:target")
    mutated("binding target.name=5", binding, ("requestObject", "target", "name"), 5,
            "wrong_type:target.name")
    # -- records read from their bytes only (a lease) ---------------------------------
    lease_line = lines[lease]
    stamp = orjson.loads(lease_line)["requestReceivedTimestamp"].encode()
    for name, value, reason in (
        ("a lease dated 2099", b"2099-01-01T00:00:00.000000Z", "future_timestamp"),
        ("a lease with month 13", b"2026-13-01T00:00:00.000000Z", "bad_timestamp"),
        ("a lease with hour 25", b"2026-01-01T25:00:00.000000Z", "bad_timestamp"),
        ("a lease dated year 0", b"0000-01-01T00:00:00.000000Z", "bad_timestamp"),
        ("a lease with letters for a time", b"XXXX-XX-XXTXX:XX:XX.000000Z", "bad_timestamp"),
    ):
        line = lease_line.replace(b'"auditID":"', b'"auditID":"hostile-%d' % len(out), 1)
        out.append(Kind(name, line.replace(stamp, value), reason, lease + 1))
    return out
