"""Interleave the records of several API servers, each writing in stageTimestamp order."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator

__all__ = ["Stream"]

_PERIOD_US = 240 * 1_000_000


class Stream:
    """Per-server ordered streams merged with bounded, slowly drifting skew.

    A record of server ``s`` with stageTimestamp ``t`` leaves at ``t + lag_s(t)`` where
    ``lag_s`` drifts between 0 and ``skew_us`` with slope far below 1, so each server's
    own records stay in stageTimestamp order while servers interleave out of order.
    ``duplicates`` is the chance a record is written twice (the same bytes, adjacent).
    Records whose stageTimestamp passes ``end_us`` are dropped.
    """

    def __init__(self, rng: random.Random, servers: int, skew_us: int, duplicates: float,
                 end_us: int | None = None) -> None:
        self.rng = rng
        self.servers = servers
        self.skew_us = skew_us if servers > 1 else 0
        self.duplicates = duplicates
        self.end_us = end_us
        self.max_stage_us = 0
        self._phase = [rng.uniform(0, 2 * math.pi) for _ in range(servers)]
        self._heap: list[tuple[int, int, int, int, bytes]] = []
        self._seq = 0
        self.written = 0

    def lag(self, server: int, t_us: int) -> int:
        """The server's write lag at ``t_us``, in [0, skew]."""
        if not self.skew_us:
            return 0
        wave = math.sin(2 * math.pi * t_us / _PERIOD_US + self._phase[server])
        return int(self.skew_us * 0.5 * (1.0 + wave))

    def accepts(self, stage_us: int) -> bool:
        """False when a record at ``stage_us`` falls after the end of the log."""
        return self.end_us is None or stage_us <= self.end_us

    def push(self, server: int, stage_us: int, line: bytes) -> bool:
        """Queue one serialized record; returns False when it falls past the end."""
        if self.end_us is not None and stage_us > self.end_us:
            return False
        key = stage_us + self.lag(server, stage_us)
        self._seq += 1
        heapq.heappush(self._heap, (key, stage_us, self._seq, server, line))
        if self.duplicates and self.rng.random() < self.duplicates:
            self._seq += 1
            heapq.heappush(self._heap, (key, stage_us, self._seq, server, line))
        if stage_us > self.max_stage_us:
            self.max_stage_us = stage_us
        return True

    def drain(self, watermark_us: int | None = None) -> Iterator[tuple[int, bytes]]:
        """Yield ``(server, line)`` for records due before ``watermark_us`` (all if None)."""
        heap = self._heap
        pop = heapq.heappop
        end = self.end_us
        while heap and (watermark_us is None or heap[0][0] < watermark_us):
            _, stage_us, _, server, line = pop(heap)
            if end is not None and stage_us > end:
                continue
            self.written += 1
            yield server, line
