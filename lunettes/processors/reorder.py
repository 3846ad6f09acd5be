"""A reorder window on the audit clock, for logs written by several API servers."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator

from lunettes.model.audit import AuditRecord


class ReorderWindow:
    """Holds records until the audit clock is ``window_us`` past them, then releases them
    in requestReceivedTimestamp order.

    The audit clock (``watermark_us``) is the newest requestReceivedTimestamp seen. A record
    older than one already released is still passed on (and counted as ``late``): the
    timeline sorts it into place as long as its Pod is still in flight.
    """

    def __init__(self, stats: Counter[str], window_us: int = 10_000_000) -> None:
        self.stats = stats
        self.window_us = window_us
        self.watermark_us = 0
        self._released_us = 0
        self._heap: list[tuple[int, int, AuditRecord]] = []
        self._seq = 0

    def push(self, record: AuditRecord) -> Iterator[AuditRecord]:
        """Add a record; yield the records that are now old enough to release."""
        if record.received_us < self._released_us:
            self.stats["late"] += 1
        self._seq += 1
        heapq.heappush(self._heap, (record.received_us, self._seq, record))
        if record.received_us > self.watermark_us:
            self.watermark_us = record.received_us
        cutoff = self.watermark_us - self.window_us
        heap = self._heap
        while heap and heap[0][0] <= cutoff:
            released = heapq.heappop(heap)[2]
            self._released_us = released.received_us
            yield released

    def flush(self) -> Iterator[AuditRecord]:
        """Release everything held, in order (end of input)."""
        while self._heap:
            released = heapq.heappop(self._heap)[2]
            self._released_us = released.received_us
            yield released

    def __len__(self) -> int:
        return len(self._heap)
