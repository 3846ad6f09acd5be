"""Partition one audit log between worker processes (``--workers N``).

Every record about one Pod must reach the same worker: its Folder alone knows the Pod.
The Pod's UID cannot be the key (only the create and the bodies carry it) and neither can
its name (Events about it have their own names). Its **namespace** can: a Pod, its status,
binding and eviction, and every Event about it live in the Pod's namespace, and every audit
record names it in ``objectRef`` before any body. So records of ``pods`` and ``events`` go to
``crc32(namespace) % N``; all other records (most of a log: leases, gets, lists) cannot
matter for Pods and are spread by line number.

Each worker reads the whole log. It decodes only its own lines; for the others it reads
just ``objectRef.resource``, ``objectRef.namespace``, ``stage`` and
``requestReceivedTimestamp`` from the bytes, without decoding (a kube-apiserver line starts
with ``{"kind":"Event","apiVersion":"audit.k8s.io/...``; ``stage`` and ``objectRef`` come
before the bodies, the timestamp after them) and, for final-stage records, yields a
:func:`~lunettes.model.audit.tick`: the audit clock (reorder window, Pod timeouts, when a
Pod leaves memory) then advances in every worker exactly as in a single process. Lines of
any other shape (EventList batches, Cloud Logging entries, pretty-printed JSON) are decoded
by every worker and their records routed one by one. Bad lines are counted by the worker
that owns them, or by worker 0 when no owner can be told.

Known difference with one process: a line whose bytes look like a final audit record of
another worker but that the owner finds invalid still advances the other workers' clocks.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from lunettes.model.audit import AuditRecord, tick
from lunettes.model.times import parse_time

_HEADS = (b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",',
          b'{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1",')
_OBJECT_REF = b'"objectRef":{'
_RESOURCE = b'"resource":"'
_NAMESPACE = b'"namespace":"'
_POD_RESOURCES = (b"pods", b"events")
_STAGE = b'"stage":"'
_RECEIVED = b'"requestReceivedTimestamp":"'
_FINAL = (b"ResponseComplete", b"Panic")
_FINAL_STAGES = ("ResponseComplete", "Panic")
POD_RESOURCES = ("pods", "events")


def _field(raw: bytes, key: bytes, start: int, end: int) -> bytes | None:
    """The string value of ``key`` between ``start`` and ``end`` (b"" when absent; None
    when it is not a plain string)."""
    at = raw.find(key, start, end)
    if at < 0:
        return b""
    at += len(key)
    close = raw.find(b'"', at, end)
    return None if close < 0 else raw[at:close]


@dataclass(frozen=True)
class Partition:
    """Worker ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"worker {self.index} of {self.count}: out of range")

    def owner(self, resource: object, namespace: object, number: int) -> int:
        """The worker of a record: by namespace for Pods and Events, else by line."""
        if resource in POD_RESOURCES and isinstance(namespace, str):
            return zlib.crc32(namespace.encode()) % self.count
        return number % self.count

    def route(self, raw: bytes, number: int) -> tuple[int | None, AuditRecord | None]:
        """(owner, tick) of one line; owner None when the bytes do not tell (decode it).

        The tick is given only for another worker's final-stage record.
        """
        if not raw.startswith(_HEADS):
            return None, None
        at = raw.find(_OBJECT_REF)
        if at < 0:
            owner = number % self.count  # a non-resource request (/healthz, /version...)
        else:
            end = raw.find(b"}", at)
            resource = _field(raw, _RESOURCE, at, end)
            if resource is None:
                return None, None
            if resource in _POD_RESOURCES:
                namespace = _field(raw, _NAMESPACE, at, end)
                if namespace is None or b"\\" in namespace:
                    return None, None
                owner = zlib.crc32(namespace) % self.count
            else:
                owner = number % self.count
        if owner == self.index:
            return owner, None
        at = raw.find(_STAGE)
        if at < 0:
            return None, None
        at += len(_STAGE)
        if raw[at:raw.find(b'"', at)] not in _FINAL:
            return owner, None
        at = raw.rfind(_RECEIVED)
        if at < 0:
            return None, None
        at += len(_RECEIVED)
        try:
            return owner, tick(parse_time(raw[at:raw.find(b'"', at)].decode()))
        except (ValueError, UnicodeDecodeError):
            return None, None

    def filter(self, record: AuditRecord, origin: str) -> Iterator[AuditRecord]:
        """A decoded record if this worker owns it, else its tick (final stages only)."""
        _, _, line = origin.rpartition(":")
        number = int(line) if line.isdigit() else 0
        if self.owner(record.resource, record.namespace, number) == self.index:
            yield record
        elif record.stage in _FINAL_STAGES:
            yield tick(record.received_us)
