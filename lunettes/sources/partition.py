"""Partition one audit log between worker processes (``--workers N``), Pod by Pod.

Every record about one Pod must reach the same worker: its Folder alone knows the Pod. The
Pod's UID cannot be the key (most records about it do not carry it); its namespace and name
can: a Pod's status, binding, eviction and delete records name it in ``objectRef``, its
create names it in ``objectRef`` or, with ``generateName``, in the response body, and every
Event about it is named ``<pod name>.<hex time>`` by the client-go recorders of
kube-scheduler, the kubelet and the controllers (core/v1 and events.k8s.io alike), so an
Event's key is its name up to the last dot. Records of one Pod hash to one worker
(``crc32("namespace/name") % N``); all other records go to a worker chosen by line number.

:func:`route_line` tells a line's owner from its bytes (:mod:`lunettes.sources.peek`): the
parent of ``--workers`` routes every line with it once (:mod:`lunettes.sources.prescan`), so
each worker decodes only its own lines; for the others' final-stage records a worker gets
their time, a :func:`~lunettes.model.audit.tick`: the audit clock (reorder window, Pod
timeouts, when a Pod leaves memory) then advances in every worker exactly as in a single
process. (A worker given a :class:`Partition` and the whole log does the same itself.)
Lines whose bytes do not tell (EventList batches, Cloud Logging entries, pretty-printed
JSON, escapes) are decoded by every worker and their records routed one by one. Bad lines
are counted by the worker that owns them, or by worker 0 when no owner can be told.

Known differences with one process: an Event named against the convention (a custom
recorder naming Events about Pod ``a`` ``b.x``) reaches Pod ``b``'s worker, which does not
know Pod ``a`` (counted as ``event_unknown_pod``); and a line whose bytes look like a final
audit record of another worker but that the owner finds invalid still advances the other
workers' clocks.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from lunettes.model.audit import AuditRecord, tick
from lunettes.sources.peek import Peek, clock_only, created_pod_name, peek, time_of

_FINAL_STAGES = ("ResponseComplete", "Panic")


def pod_key(resource: str, namespace: str, name: str) -> str | None:
    """``namespace/pod name`` of a record about a Pod or an Event; None if none is named."""
    if resource == "events":
        head, dot, _ = name.rpartition(".")
        name = head if dot else name
    elif resource != "pods":
        return None
    return f"{namespace}/{name}" if name else None


def record_key(record: AuditRecord) -> str | None:
    """:func:`pod_key` of a decoded record; a created Pod's generated name comes from the
    response body."""
    name = record.name
    if not name and record.resource == "pods" and record.verb == "create":
        metadata = (record.response or {}).get("metadata")
        name = str(metadata.get("name") or "") if isinstance(metadata, dict) else ""
    return pod_key(record.resource, record.namespace, name)


def owner(key: str | None, number: int, count: int) -> int:
    """Which of ``count`` partitions owns a record with Pod ``key``: the key's CRC-32
    modulo ``count``; a record naming no Pod goes by its ``number`` (a line number)."""
    if key is None:
        return number % count
    return zlib.crc32(key.encode()) % count


def line_owner(raw: bytes, seen: Peek, number: int, count: int) -> int | None:
    """:func:`owner` of line ``number`` from its bytes (``seen``: what
    :func:`~lunettes.sources.peek.peek` read of them); None when they do not tell (every
    worker decodes the line, then keeps the records it owns)."""
    name = seen.name
    if not name and seen.resource == b"pods" and seen.verb == b"create":
        name = created_pod_name(raw) or b""
        if not name:
            return None
    try:
        key = pod_key(seen.resource.decode(), seen.namespace.decode(), name.decode())
    except UnicodeDecodeError:
        return None
    return owner(key, number, count)


ANY, CLOCK, POD = 0, 1, 2
"""What :func:`route_line` tells of a line: its bytes do not tell (every worker decodes
it); it is about no Pod (its owner counts it, the others only see its time); it is about a
Pod (its owner decodes it, the others only see its time)."""


def route_line(raw: bytes, number: int, count: int, every: bool = False
               ) -> tuple[int, int, int | None]:
    """``(what, owner, time)`` of line ``number`` for ``count`` workers, from its bytes
    alone: ``what`` is :data:`ANY` (owner -1), :data:`CLOCK` or :data:`POD`; ``time`` is
    the audit time the line moves the clock to (its received time when its stage is
    final, else 0 or None). ``every``: lines about no Pod are decoded too (as POD lines).
    The one routing of ``--workers`` and of live partitions."""
    return route_seen(raw, peek(raw), number, count, every)


def route_seen(raw: bytes, seen: Peek | None, number: int, count: int, every: bool = False
               ) -> tuple[int, int, int | None]:
    """:func:`route_line` of a line :func:`~lunettes.sources.peek.peek` read already
    (``seen``: what it answered)."""
    if seen is None:
        return ANY, -1, None
    if not every:
        received = clock_only(raw, seen)
        if received is not None:
            return CLOCK, number % count, received
    found = 0 if count == 1 else line_owner(raw, seen, number, count)
    if found is None:
        return ANY, -1, None
    return POD, found, time_of(raw, seen) if seen.final else None


@dataclass(frozen=True)
class Partition:
    """Worker ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"worker {self.index} of {self.count}: out of range")

    def _owner(self, key: str | None, number: int) -> int:
        return owner(key, number, self.count)

    def route(self, raw: bytes, seen: Peek, number: int) -> int | None:
        """The worker of a line :func:`~lunettes.sources.peek.peek` read; None when its
        bytes do not tell (decode it, then :meth:`filter`)."""
        return line_owner(raw, seen, number, self.count)

    def filter(self, record: AuditRecord, origin: str) -> Iterator[AuditRecord]:
        """A decoded record if this worker owns it, else its tick (final stages only)."""
        _, _, line = origin.rpartition(":")
        number = int(line) if line.isdigit() else 0
        if self._owner(record_key(record), number) == self.index:
            yield record
        elif record.stage in _FINAL_STAGES:
            yield tick(record.received_us, origin)
