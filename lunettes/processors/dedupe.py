"""One record per request: final stages only, exact duplicates dropped."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

from lunettes.config.errors import Section
from lunettes.model.audit import REFUSED_STAGE, SKIPPED_STAGE, TICK_STAGE, AuditRecord
from lunettes.processors.base import Run, Stateless, seconds
from lunettes.processors.decode import verify
from lunettes.registry import BuildContext

FINAL_STAGES = frozenset({"ResponseComplete", "Panic"})


class Deduplicator:
    """Accepts the ResponseComplete (or Panic) record of each request, once.

    RequestReceived/ResponseStarted records are counted as ``interim_stage``; a second
    final record with the same auditID as ``duplicate``. Remembered IDs are forgotten once
    they are ``horizon_us`` older than the newest record seen, so memory stays bounded.

    With ``valid`` (records still undecoded: see :mod:`lunettes.processors.decode`), a
    repeated request is decided as if every line had been decoded first: when the copy
    accepted before turns out not to be ``valid``, the new one is accepted in its place;
    a new copy that is not ``valid`` is not a duplicate (``valid`` counts it as bad).
    """

    def __init__(self, stats: Counter[str], horizon_us: int = 120_000_000,
                 valid: Callable[[AuditRecord], bool] | None = None) -> None:
        self.stats = stats
        self.horizon_us = horizon_us
        self.valid = valid
        self._seen: dict[str, AuditRecord | None] = {}
        """auditID -> the accepted record while it is undecoded (``raw``), else None."""
        self._order: deque[tuple[int, str]] = deque()
        self._newest = 0

    def accept(self, record: AuditRecord) -> bool:
        """True if the record is the one that counts for its request."""
        if record.stage not in FINAL_STAGES:
            self.stats["interim_stage"] += 1
            return False
        audit_id, seen = record.audit_id, self._seen
        if audit_id in seen:
            first, valid = seen[audit_id], self.valid
            if first is None or valid is None or valid(first):
                if valid is None or valid(record):
                    self.stats["duplicate"] += 1
                return False
            seen[audit_id] = record if record.undecoded is not None else None
            return True  # the copy accepted before did not decode: this one counts
        seen[audit_id] = record if record.undecoded is not None else None
        received, order = record.received_us, self._order
        order.append((received, audit_id))
        if received > self._newest:
            self._newest = received
        cutoff = self._newest - self.horizon_us
        if order[0][0] < cutoff:
            while order and order[0][0] < cutoff:
                seen.pop(order.popleft()[1], None)
        return True


    def carry(self) -> dict[str, Any]:
        """The audit IDs remembered now, for a later run (:mod:`lunettes.processors.carry`):
        those of records that decoded, or are still to be decoded."""
        seen = {audit_id for audit_id, first in self._seen.items()
                if first is None or first.stage is not REFUSED_STAGE}
        return {"seen": seen, "order": self._order, "newest": self._newest}

    def resume(self, state: dict[str, Any]) -> None:
        """Remember what :meth:`carry` returned at the end of an earlier run."""
        self._seen = dict.fromkeys(state["seen"])
        self._order, self._newest = state["order"], state["newest"]


class Dedupe(Stateless):
    """Processor ``dedupe``: one record per request (:class:`Deduplicator`), auditIDs
    remembered for ``horizon_s`` of audit time. Clock ticks and skipped records pass.
    Undecoded records are compared by what their bytes told; a repeated request decides
    as if every line had been decoded first (:func:`~lunettes.processors.decode.verify`)."""

    def __init__(self, horizon_us: int = 120_000_000, name: str = "dedupe") -> None:
        self.name = name
        self.horizon_us = horizon_us

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Dedupe:
        horizon_us = seconds(section, "horizon_s", 120)
        section.check_unknown()
        return cls(horizon_us, key)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        dedupe = Deduplicator(run.stats, self.horizon_us, lambda r: verify(r, run))
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
