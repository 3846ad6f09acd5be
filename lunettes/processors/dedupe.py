"""One record per request: final stages only, exact duplicates dropped."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

from lunettes.config.errors import Section
from lunettes.model.audit import SKIPPED_STAGE, TICK_STAGE, AuditRecord
from lunettes.processors.base import Run, Stateless, seconds
from lunettes.registry import BuildContext

FINAL_STAGES = frozenset({"ResponseComplete", "Panic"})


class Deduplicator:
    """Accepts the ResponseComplete (or Panic) record of each request, once.

    RequestReceived/ResponseStarted records are counted as ``interim_stage``; a second
    final record with the same auditID as ``duplicate``. Remembered IDs are forgotten once
    they are ``horizon_us`` older than the newest record seen, so memory stays bounded.
    """

    def __init__(self, stats: Counter[str], horizon_us: int = 120_000_000) -> None:
        self.stats = stats
        self.horizon_us = horizon_us
        self._seen: set[str] = set()
        self._order: deque[tuple[int, str]] = deque()
        self._newest = 0

    def accept(self, record: AuditRecord) -> bool:
        """True if the record is the one that counts for its request."""
        if record.stage not in FINAL_STAGES:
            self.stats["interim_stage"] += 1
            return False
        audit_id, seen = record.audit_id, self._seen
        if audit_id in seen:
            self.stats["duplicate"] += 1
            return False
        seen.add(audit_id)
        received, order = record.received_us, self._order
        order.append((received, audit_id))
        if received > self._newest:
            self._newest = received
        cutoff = self._newest - self.horizon_us
        if order[0][0] < cutoff:
            while order and order[0][0] < cutoff:
                seen.discard(order.popleft()[1])
        return True


    def carry(self) -> dict[str, Any]:
        """The audit IDs remembered now, for a later run (:mod:`lunettes.processors.carry`)."""
        return {"seen": self._seen, "order": self._order, "newest": self._newest}

    def resume(self, state: dict[str, Any]) -> None:
        """Remember what :meth:`carry` returned at the end of an earlier run."""
        self._seen, self._order, self._newest = state["seen"], state["order"], state["newest"]


class Dedupe(Stateless):
    """Processor ``dedupe``: one record per request (:class:`Deduplicator`), auditIDs
    remembered for ``horizon_s`` of audit time. Clock ticks and skipped records pass."""

    def __init__(self, horizon_us: int = 120_000_000, name: str = "dedupe") -> None:
        self.name = name
        self.horizon_us = horizon_us

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Dedupe:
        horizon_us = seconds(section, "horizon_s", 120)
        section.check_unknown()
        return cls(horizon_us, key)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        dedupe = Deduplicator(run.stats, self.horizon_us)
        accept = dedupe.accept
        carry = run.carry
        for record in items:
            stage = record.stage
            if stage is TICK_STAGE or stage is SKIPPED_STAGE:
                yield record
                continue
            if carry is not None:  # the first record about a Pod: continue the last run?
                if carry.decide(record.received_us):
                    dedupe.resume(carry.carried.dedupe)
                carry = None
            if accept(record):
                yield record
        if run.carry is not None and run.ending:
            run.carry.dedupe = dedupe.carry()
