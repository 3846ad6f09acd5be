"""The load analysis of a stream of audit lines: series, tables and Prometheus counts.

Both ways in use it: ``lunettes analyze apiserver`` feeds it the lines of the files it
reads, and ``lunettes replay/serve --apiserver-load`` the lines the pipeline's sources read:
the ``file``, ``follow`` and ``webhook`` sources read each line through
:meth:`RequestStream.peek_line` (their ``line_reader``: one decode counts the request and
tells the source what its byte peek would); the others hand each record's line on in
``record.raw`` when the pipeline asks (``keep_lines``), and :meth:`RequestStream.process`
counts it and passes the record on without it.

Cheap by aggregation: a line's few fields are decoded by msgspec
(:func:`~lunettes.apiserver.scan.read`) and counted under them, with its latency, in a
table of its interval. When the interval is no longer among
the two newest, the requests that differ only in what no count reads (object names and
query values in the URI; the name but for its presence) are counted together: decoded
once and counted into the series (:mod:`.series`), the tables (:mod:`.requests`) and the
Prometheus counts (:mod:`.counts`) with their number and latencies. A line msgspec refuses
is decoded and counted at once (a bad one counted in ``bad``), as is a line whose interval
was already handed on. The analysis' own results (anomalies, drilldown) need the
``analyze`` extra and are computed only when asked (:meth:`RequestStream.analysis`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from copy import deepcopy
from typing import TYPE_CHECKING, Any

from lunettes.apiserver.clients import uri_pattern
from lunettes.apiserver.counts import RequestCounts
from lunettes.apiserver.reader import decoded_facts, read_lines
from lunettes.apiserver.requests import RequestTables, is_discovery
from lunettes.apiserver.scan import (
    Key,
    RequestFacts,
    Unreadable,
    decode,
    facts_of,
    is_timed,
    read,
    request,
)
from lunettes.apiserver.series import Series, SeriesBuilder
from lunettes.model.audit import AuditRecord
from lunettes.sources.errors import BadRecords
from lunettes.sources.peek import Peek, peek_decoded

if TYPE_CHECKING:
    from lunettes.apiserver.report import LoadAnalysis

__all__ = ["RequestStream"]

_PENDING = 2  # intervals whose lines are still gathered: the newest and the one before


class RequestStream:
    """Counts the requests of audit lines (``interval_s``: the series' interval; ``top_k``
    values per dimension and interval; ``max_values`` per metric label). Lines the bytes
    do not tell and that do not decode are counted in ``bad``."""

    def __init__(self, interval_s: int = 60, top_k: int = 25, max_values: int = 50,
                 bad: BadRecords | None = None) -> None:
        self.interval_us = interval_s * 1_000_000
        self.counts = RequestCounts(interval_s, max_values)
        self.builder = SeriesBuilder(interval_s, top_k=top_k, on_close=self.counts.close,
                                     on_late=self.counts.add_joint)
        self.tables = RequestTables()
        self.bad = bad if bad is not None else BadRecords()
        self.requests = 0
        self._pending: dict[int, dict[Key, list[Any]]] = {}
        self._newest = -1
        self._series: Series | None = None
        self.lock = threading.Lock()

    def process(self, records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        """Pass ``records`` on, each without its line, counting the requests of the lines
        (under :attr:`lock`: :meth:`snapshot` may be asked from another thread)."""
        add, lock = self.add_line, self.lock
        for record in records:
            raw = record.raw
            if raw:
                record.raw = b""
                with lock:
                    add(raw, record.origin)
            yield record

    def peek_line(self, raw: bytes, origin: str) -> Peek | None:
        """A source's reading of one line (its
        :attr:`~lunettes.sources.files.FileSource.line_reader`): the line's request
        counted, and what :func:`~lunettes.sources.peek.peek` tells of it, from the line
        decoded once for both; None when msgspec refuses the line (decoded here by the
        checked path, and by the source)."""
        event = decode(raw)
        got = event if isinstance(event, Unreadable) else request(event)
        with self.lock:
            self._count_read(raw, origin, got)
        if isinstance(got, Unreadable) or isinstance(event, Unreadable):
            return None
        return peek_decoded(event.auditID, event.stage, event.requestURI, event.verb,
                            event.objectRef, None if got is None else got[1])

    def snapshot(self) -> RequestStream:
        """A copy of what was counted so far, every interval closed (its analysis is the
        report of the requests read so far); this stream counts on as before."""
        hook = self.counts.before_close  # (a writer of this run's, not copied)
        with self.lock:
            copy = deepcopy(self, {} if hook is None else {id(hook): None})
        copy.finish()
        return copy

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def read(self, paths: Iterable[str]) -> None:
        """Count the requests of audit log files, directories or ``-`` (see
        :func:`~lunettes.apiserver.reader.read_lines`), then :meth:`finish`."""
        for item, origin in read_lines(paths, self.bad):
            if isinstance(item, bytes):
                self.add_line(item, origin)
            else:
                self.add(item)
        self.finish()

    def add_line(self, raw: bytes, origin: str = "") -> None:
        """Count the request of one audit line (nothing for a stage that is not final)."""
        self._count_read(raw, origin, read(raw))

    def _count_read(self, raw: bytes, origin: str,
                    got: tuple[Key, int, int | None] | Unreadable | None) -> None:
        """Count what :func:`~lunettes.apiserver.scan.read` read of a line; a line msgspec
        refused is decoded by the checked path (a bad line counted in :attr:`bad`)."""
        if isinstance(got, Unreadable):
            for item in decoded_facts(raw, origin, self.bad):
                self.add(item)
        elif got is not None:
            self._gather(*got)

    def _gather(self, key: Key, received: int, stage_at: int | None) -> None:
        """Count a request :func:`~lunettes.apiserver.scan.request` read: gathered in its
        interval's table, counted at once when that interval was handed on already."""
        index = received // self.interval_us
        if index > self._newest:
            self._advance(index)
        elif index <= self._newest - _PENDING:  # its interval was handed on: count it now
            self.add(facts_of(key, received, stage_at))
            return
        lines = self._pending.get(index)
        if lines is None:
            lines = self._pending[index] = {}
        entry = lines.get(key)
        if entry is None:
            entry = lines[key] = [0, received, []]
        entry[0] += 1
        if stage_at is not None:
            entry[2].append(stage_at - received if stage_at > received else 0)

    def add(self, facts: RequestFacts) -> None:
        """Count one finished request."""
        index = facts.time_us // self.interval_us
        if index > self._newest:
            self._advance(index)
        self._count(facts, index, 1, None)

    def _count(self, facts: RequestFacts, index: int, n: int,
               latencies: list[int] | None) -> None:
        self.requests += n
        self.builder.add(facts, n)
        self.tables.add(facts, n, latencies)
        self.counts.observe(facts, index, n, latencies)

    def _advance(self, index: int) -> None:
        self._newest = index
        for old in sorted(i for i in self._pending if i <= index - _PENDING):
            self._hand_on(old)
        self.builder.advance(index)

    def _hand_on(self, index: int) -> None:
        """Count the gathered requests of one interval: requests that differ only in what
        no count reads (object names and query values in the URI, the object name but
        for its presence) are counted together, once."""
        shapes: dict[tuple[Any, ...], list[Any]] = {}
        for key, (n, received, latencies) in self._pending.pop(index).items():
            uri = key[0]
            shape = (uri_pattern(uri), is_discovery(uri), key[1:6], key[6] == "", key[7:])
            entry = shapes.get(shape)
            if entry is None:
                shapes[shape] = [key, n, received, latencies]
            else:
                entry[1] += n
                entry[3] += latencies
        for key, n, received, latencies in shapes.values():
            facts = facts_of(key, received, None)
            timed = latencies if is_timed(facts.verb, facts.subresource) else []
            self._count(facts, index, n, timed)

    def finish(self) -> None:
        """The end of the input: every interval counted and closed; the counts then hold
        every request."""
        for index in sorted(self._pending):
            self._hand_on(index)
        self.builder.close_all()

    def series(self) -> Series:
        """The series of every request counted (after :meth:`finish`; needs numpy)."""
        if self._series is None:
            self.finish()
            self._series = self.builder.series()
        return self._series

    def analysis(self, **options: Any) -> LoadAnalysis:
        """The report of ``lunettes analyze apiserver`` over the requests counted;
        ``options`` as :func:`~lunettes.apiserver.report.explain`'s."""
        from lunettes.apiserver.report import explain

        return explain(self.series(), self.tables, bad=self.bad, **options)
