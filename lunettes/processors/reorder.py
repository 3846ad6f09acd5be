"""A reorder window on the audit clock, for logs written by several API servers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from heapq import heappop, heappush

from lunettes.config.errors import Section
from lunettes.model.audit import SKIPPED_STAGE, TICK_STAGE, AuditRecord
from lunettes.processors.base import Run, Stateless, lowest, seconds
from lunettes.processors.decode import verify
from lunettes.registry import BuildContext


class ReorderWindow:
    """Holds records until the audit clock is ``window_us`` past them, then releases them
    in requestReceivedTimestamp order.

    The audit clock (``watermark_us``) is the newest requestReceivedTimestamp seen. A record
    older than one already released is still passed on (and counted as ``late``, and
    given to ``on_late`` with the time released so far): the timeline sorts it into place
    as long as its Pod is still in flight. Clock ticks (see
    :func:`~lunettes.model.audit.tick`) and records read undecoded (not about a Pod; a
    watch's ResponseComplete is always minutes behind) move through the window like
    records and are never late.
    """

    def __init__(self, stats: Counter[str], window_us: int = 10_000_000,
                 on_late: Callable[[AuditRecord, int], None] | None = None,
                 valid: Callable[[AuditRecord], bool] | None = None) -> None:
        self.stats = stats
        self.on_late = on_late
        self.valid = valid
        """Checks a late record before it counts as late (one that is not valid, a line
        that does not decode, is counted by ``valid`` itself, as bad input)."""
        self.window_us = window_us
        self.watermark_us = 0
        self._released_us = 0
        self._heap: list[tuple[int, int, AuditRecord]] = []
        self._seq = 0

    def push(self, record: AuditRecord) -> list[AuditRecord]:
        """Add a record; return the records that are now old enough to release, in order."""
        received = record.received_us
        stage = record.stage
        if received < self._released_us and stage is not TICK_STAGE \
                and stage is not SKIPPED_STAGE and (self.valid is None or self.valid(record)):
            self.stats["late"] += 1
            if self.on_late is not None:
                self.on_late(record, self._released_us)
        self._seq += 1
        heap = self._heap
        heappush(heap, (received, self._seq, record))
        if received > self.watermark_us:
            self.watermark_us = received
        cutoff = self.watermark_us - self.window_us
        if heap[0][0] > cutoff:
            return []
        out = []
        while heap and heap[0][0] <= cutoff:
            out.append(heappop(heap)[2])
        if out[-1].received_us > self._released_us:  # a late record does not move it back
            self._released_us = out[-1].received_us
        return out

    def flush(self) -> Iterator[AuditRecord]:
        """Release everything held, in order (end of input)."""
        while self._heap:
            released = heappop(self._heap)[2]
            self._released_us = max(self._released_us, released.received_us)
            yield released

    def held(self) -> list[AuditRecord]:
        """The records held now (any order)."""
        return [item[2] for item in self._heap]

    def __len__(self) -> int:
        return len(self._heap)


class Reorder(Stateless):
    """Processor ``reorder``: a :class:`ReorderWindow` of ``window_s`` of audit time; an
    undecoded late record is decoded before it counts as late
    (:func:`~lunettes.processors.decode.verify`)."""

    def __init__(self, window_us: int = 10_000_000, name: str = "reorder") -> None:
        self.name = name
        self.window_us = window_us
        self._window: ReorderWindow | None = None

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Reorder:
        window_us = seconds(section, "window_s", 10)
        section.check_unknown()
        return cls(window_us, key)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        window = self._window = ReorderWindow(run.stats, self.window_us, run.late.add,
                                              lambda r: verify(r, run))
        push = window.push
        for record in items:
            released = push(record)
            if released:
                yield from released
        if run.ending:
            yield from window.flush()

    def held(self) -> dict[str, int]:
        return lowest(self._window.held()) if self._window is not None else {}
