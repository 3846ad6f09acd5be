"""An audit clock that cannot be dragged: records far ahead of it are quarantined."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from lunettes.config.errors import Section
from lunettes.model.audit import SKIPPED_STAGE, TICK_STAGE, AuditRecord
from lunettes.model.times import format_time
from lunettes.processors.base import Run, Stateless, lowest, seconds
from lunettes.processors.decode import verify
from lunettes.registry import BuildContext

Quarantine = Callable[[AuditRecord, int], None]
"""Told of each quarantined record, with the audit clock it was too far ahead of."""


class FutureGuard:
    """Passes records on in input order, except those more than ``max_future_us`` ahead of
    the audit clock (the newest time passed on so far), which are quarantined: told to
    ``quarantine`` and never passed on, so they cannot move the clock, time Pods out, or
    push the reorder window and the deduplicator past every other record.

    The first ``confirm`` timed records of the input set the clock: their (lower) median,
    so one wild record among them cannot. So do the first records of a file that starts
    too far ahead (another capture, read after an older one). Within a file, a record too
    far ahead waits: the next record within reach quarantines it (an outlier), while
    ``confirm`` records in a row too far ahead are a real gap in the log, admitted the same
    way. Records still waiting at the end are quarantined. Records without a time (0:
    undecoded interim stages) pass at once. The file of a record is its ``origin`` up to
    the line number.
    """

    def __init__(self, max_future_us: int, quarantine: Quarantine, confirm: int = 8) -> None:
        self.max_future_us = max_future_us
        self.quarantine = quarantine
        self.confirm = confirm
        self.clock_us = 0
        """The newest time passed on."""
        self.waiting: list[AuditRecord] = []
        """The records held back now (too far ahead, not yet told apart)."""

    def admit(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        """The records of ``records`` that may move the audit clock, in input order."""
        confirm, ahead = self.confirm, self.max_future_us
        waiting = self.waiting
        starting = True  # the first records of the input, or of a file, set the clock
        clock = reach = 0
        last = ""  # the origin of the last record passed on with a time
        for record in records:
            received = record.received_us
            if received <= reach and not starting:  # the common case
                if received:
                    if received > clock:
                        clock, reach = received, received + ahead
                    if waiting:
                        for outlier in waiting:
                            self.quarantine(outlier, clock)
                        waiting.clear()
                    last = record.origin
                yield record
                continue
            if not received:
                yield record
                continue
            if starting and waiting and _file(record.origin) != _file(waiting[0].origin):
                self.clock_us = clock
                yield from self._establish(waiting)  # the first file was a short one
                last = waiting[-1].origin
                waiting.clear()
                clock, starting = self.clock_us, received > self.clock_us + ahead
                reach = clock + ahead
                if not starting:
                    clock, reach, last = max(clock, received), max(reach, received + ahead), \
                        record.origin
                    self.clock_us = clock
                    yield record
                    continue
            elif not starting and not waiting and _file(record.origin) != _file(last):
                starting = True  # a file that starts ahead of the clock
            waiting.append(record)
            if len(waiting) >= confirm:  # the start, or a real gap in the log
                self.clock_us = clock
                yield from self._establish(waiting)
                last, starting = waiting[-1].origin, False
                waiting.clear()
                clock = self.clock_us
                reach = clock + ahead
        self.clock_us = clock
        if starting:
            yield from self._establish(waiting)
        else:
            for outlier in waiting:
                self.quarantine(outlier, clock)
        waiting.clear()

    def _establish(self, records: list[AuditRecord]) -> Iterator[AuditRecord]:
        """Move the clock to the median of ``records`` (never back); pass on those within
        reach of it, quarantine the others."""
        if not records:
            return
        times = sorted(r.received_us for r in records)
        median = times[(len(times) - 1) // 2]
        reach = median + self.max_future_us
        clock = max(self.clock_us, median)
        refused = []
        for record in records:
            if record.received_us <= reach:
                clock = max(clock, record.received_us)
                yield record
            else:
                refused.append(record)
        self.clock_us = clock
        for record in refused:
            self.quarantine(record, clock)


class Clock(Stateless):
    """Processor ``clock``: the audit clock. Counts the records read (``records``; those
    not about a Pod also as ``skipped``), keeps the watermark (``run.newest_us``), and
    quarantines records more than ``max_future_s`` ahead of it (0: never) as
    :class:`FutureGuard` does, counting them in ``run.bad`` (``future_timestamp``). The
    heartbeats of live sources (ticks without a time) end here."""

    def __init__(self, max_future_us: int = 300_000_000, name: str = "clock") -> None:
        self.name = name
        self.max_future_us = max_future_us
        self._guard: FutureGuard | None = None

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Clock:
        max_future_us = seconds(section, "max_future_s", 300)
        section.check_unknown()
        return cls(max_future_us, key)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        stats, bad = run.stats, run.bad
        if self.max_future_us:
            def quarantine(record: AuditRecord, clock_us: int) -> None:
                # another worker's tick: it counts it; a line that does not decode: bad
                if record.stage is not TICK_STAGE and verify(record, run, counted=False):
                    ahead = (record.received_us - clock_us) / 1e6
                    bad.add("future_timestamp", record.origin or "?",
                            f"{format_time(record.received_us)}, {ahead:.0f} s ahead of "
                            f"the audit clock ({format_time(clock_us)})", record=record)
            self._guard = FutureGuard(self.max_future_us, quarantine)
            items = self._guard.admit(items)
        newest = run.newest_us
        for record in items:
            stage = record.stage
            if stage is TICK_STAGE:  # another worker's record: not counted
                if not record.received_us:
                    continue  # a live source's heartbeat
            else:
                stats["records"] += 1
                if stage is SKIPPED_STAGE:  # not about a Pod: final ones move the clock
                    stats["skipped"] += 1
                    if not record.received_us:
                        continue
            received = record.received_us
            if newest is None or received > newest:
                run.newest_us = newest = received
            yield record

    def held(self) -> dict[str, int]:
        return lowest(self._guard.waiting) if self._guard is not None else {}


def _file(origin: str) -> str:
    """The file part of an origin (``file:line``, ``file#n``; a tick's is its file)."""
    end = len(origin)
    while end and (origin[end - 1].isdigit() or origin[end - 1] in ":#"):
        end -= 1
    return origin[:end]
