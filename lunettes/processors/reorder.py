"""A reorder window on the audit clock, for logs written by several API servers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from heapq import heappop, heappush

from lunettes.model.audit import TICK_STAGE, AuditRecord


class ReorderWindow:
    """Holds records until the audit clock is ``window_us`` past them, then releases them
    in requestReceivedTimestamp order.

    The audit clock (``watermark_us``) is the newest requestReceivedTimestamp seen. A record
    older than one already released is still passed on (and counted as ``late``): the
    timeline sorts it into place as long as its Pod is still in flight. Clock ticks (see
    :func:`~lunettes.model.audit.tick`) move through the window like records.
    """

    def __init__(self, stats: Counter[str], window_us: int = 10_000_000) -> None:
        self.stats = stats
        self.window_us = window_us
        self.watermark_us = 0
        self._released_us = 0
        self._heap: list[tuple[int, int, AuditRecord]] = []
        self._seq = 0

    def push(self, record: AuditRecord) -> list[AuditRecord]:
        """Add a record; return the records that are now old enough to release, in order."""
        received = record.received_us
        if received < self._released_us and record.stage is not TICK_STAGE:
            self.stats["late"] += 1
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
        self._released_us = out[-1].received_us
        return out

    def flush(self) -> Iterator[AuditRecord]:
        """Release everything held, in order (end of input)."""
        while self._heap:
            released = heappop(self._heap)[2]
            self._released_us = released.received_us
            yield released

    def held(self) -> list[AuditRecord]:
        """The records held now (any order)."""
        return [item[2] for item in self._heap]

    def __len__(self) -> int:
        return len(self._heap)
