"""An audit clock that cannot be dragged: records far ahead of it are quarantined."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from lunettes.model.audit import AuditRecord

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

    def admit(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        """The records of ``records`` that may move the audit clock, in input order."""
        confirm, ahead = self.confirm, self.max_future_us
        waiting: list[AuditRecord] = []
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
                        waiting = []
                    last = record.origin
                yield record
                continue
            if not received:
                yield record
                continue
            if starting and waiting and _file(record.origin) != _file(waiting[0].origin):
                self.clock_us = clock
                yield from self._establish(waiting)  # the first file was a short one
                last, waiting = waiting[-1].origin, []
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
                last, waiting, starting = waiting[-1].origin, [], False
                clock = self.clock_us
                reach = clock + ahead
        self.clock_us = clock
        if starting:
            yield from self._establish(waiting)
        else:
            for outlier in waiting:
                self.quarantine(outlier, clock)

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


def _file(origin: str) -> str:
    """The file part of an origin (``file:line``, ``file#n``; a tick's is its file)."""
    end = len(origin)
    while end and (origin[end - 1].isdigit() or origin[end - 1] in ":#"):
        end -= 1
    return origin[:end]
