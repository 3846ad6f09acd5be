"""ElasticsearchSource: audit events that Filebeat or Elastic Agent indexed, read back.

Both layouts keep the whole audit Event as one object, under ``kubernetes.audit`` by
default (``event_field``): the documents of deploy/filebeat (daily ``kube-audit-*``
indices) and those of Elastic's Kubernetes integration (the ``logs-kubernetes.audit_logs-*``
data stream, whose ingest pipeline drops ``requestObject.metadata`` and
``responseObject.metadata``). Each document's event goes through the same decoding as a
file line; a document without one is counted in ``bad`` with ``index/_id`` as its place.

Reading is in audit-time order: each poll opens a point in time (PIT) on ``index`` and
pages through it with ``search_after``, sorted on ``time_field``
(``kubernetes.audit.requestReceivedTimestamp``: the integration's ``@timestamp`` is the
ingest time) and then ``tiebreak`` (auditID, stage: stable across PITs, unlike
``_shard_doc``). Only documents older than now - ``lag_s`` are read, so that documents
indexed late (Filebeat's batching, refresh interval) are not skipped; then the PIT is
closed and the next poll, ``poll_s`` later, starts where this one ended. A record's
checkpoint is the sort values of the document before it.

Documents without ``time_field`` never match that search. Each poll counts them (a
``_count`` of ``must_not exists``) and adds those not reported yet to ``bad`` as
``missing_time_field``, with the index pattern as their place: they are reported, not
silently unseen.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from elasticsearch import ApiError, Elasticsearch, TransportError

from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord, tick
from lunettes.registry import BuildContext
from lunettes.sources.decode import decode_document
from lunettes.sources.errors import BadRecord, BadRecords
from lunettes.store.es_connection import client, connection_from_config

__all__ = ["ElasticsearchSource"]

DEFAULT_INDEX = "kube-audit-*,logs-kubernetes.audit_logs-*"
EVENT_FIELD = "kubernetes.audit"
REMEMBERED = 200_000
"""Positions whose checkpoint is remembered; older ones (never asked for without
``--checkpoint``) are forgotten, and a restart from one would read from the start."""


class ElasticsearchSource:
    """Audit records from Elasticsearch documents, in audit-time order; see the module
    docstring. ``es`` is the official client; ``clock`` gives seconds since the epoch
    (the lag's now)."""

    live = True

    def __init__(self, es: Elasticsearch, *, index: str = DEFAULT_INDEX,
                 name: str = "elasticsearch", event_field: str = EVENT_FIELD,
                 time_field: str = f"{EVENT_FIELD}.requestReceivedTimestamp",
                 tiebreak: Sequence[str] = (f"{EVENT_FIELD}.auditID",
                                            f"{EVENT_FIELD}.stage"),
                 lag_s: float = 30.0, poll_s: float = 5.0, page_size: int = 1000,
                 keep_alive: str = "1m", stall_s: float = 60.0,
                 bad: BadRecords | None = None, resume: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.es = es
        self.index = index
        self.name = name
        self.event_field = event_field
        self.sort = [{time_field: {"order": "asc"}},
                     *({field: {"order": "asc"}} for field in tiebreak)]
        self.time_field = time_field
        self.lag_s = lag_s
        self.poll_s = poll_s
        self.page_size = page_size
        self.keep_alive = keep_alive
        self.stall_s = stall_s
        self.bad = bad if bad is not None else BadRecords()
        self.clock = clock
        self.lane = f"{name}:{index}"
        saved = (resume or {}).get(self.lane)
        self._after: list[Any] | None = saved.get("search_after") if saved else None
        self._before: OrderedDict[int, list[Any] | None] = OrderedDict()
        self._stop = threading.Event()
        self.state, self.error = "starting", ""
        self.stats = {"documents": 0, "searches": 0, "failures": 0, "untimed": 0}
        self.keep_lines = False
        """Records carry their event as one audit line in ``raw`` (set by the pipeline
        when a processor reads lines: the API server load analysis)."""

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext
                    ) -> ElasticsearchSource:
        """The connection keys of the Elasticsearch sink (hosts, api_key, username with
        password or password_file, ca_certs, verify_certs), and ``index`` (patterns,
        comma-separated), ``event_field``, ``time_field``, ``tiebreak``, ``lag_s`` (30),
        ``poll_s`` (5), ``page_size`` (1000), ``keep_alive`` ("1m"), ``stall_s`` (60),
        ``timeout_s`` (30)."""
        connection = connection_from_config(section, context)
        index = section.get("index", DEFAULT_INDEX, str)
        event_field = section.get("event_field", EVENT_FIELD, str)
        time_field = section.get("time_field", f"{event_field}.requestReceivedTimestamp",
                                 str)
        tiebreak = section.strings("tiebreak") or [f"{event_field}.auditID",
                                                   f"{event_field}.stage"]
        numbers = {k: float(section.get(k, d, (int, float))) for k, d in (
            ("lag_s", 30.0), ("poll_s", 5.0), ("stall_s", 60.0), ("timeout_s", 30.0))}
        page_size = section.get("page_size", 1000, int)
        keep_alive = section.get("keep_alive", "1m", str)
        section.check_unknown()
        for name in ("poll_s", "stall_s", "timeout_s"):
            if numbers[name] <= 0:
                section.problem(name, f"must be positive, got {numbers[name]}")
        if numbers["lag_s"] < 0:
            section.problem("lag_s", f"must not be negative, got {numbers['lag_s']}")
        if page_size < 1:
            section.problem("page_size", f"must be at least 1, got {page_size}")
        es = client(**connection, request_timeout=numbers["timeout_s"])
        return cls(es, index=index, name=key, event_field=event_field,
                   time_field=time_field, tiebreak=tiebreak, page_size=max(1, page_size),
                   keep_alive=keep_alive, bad=context.bad, resume=context.resume,
                   lag_s=numbers["lag_s"], poll_s=numbers["poll_s"],
                   stall_s=numbers["stall_s"])

    # -- the Source contract --------------------------------------------------------------
    def checkpoint(self, lane: str, n: int) -> dict[str, Any] | None:
        """The sort values of the document before record ``n``: a restart reads from it."""
        if lane != self.lane or n not in self._before:
            return None
        while self._before and next(iter(self._before)) < n:  # never asked again
            self._before.popitem(last=False)
        return {"search_after": self._before[n]}

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[AuditRecord]:
        self.state = "reading"
        n = 0
        failing_since: float | None = None
        try:
            while not self._stop.is_set():
                try:
                    for record, before in self._poll():
                        record.position = (self.lane, n)
                        self._before[n] = before
                        if len(self._before) > REMEMBERED:
                            self._before.popitem(last=False)
                        n += 1
                        yield record
                    failing_since = None
                    self.state, self.error = "following", ""
                except (ApiError, TransportError) as exc:
                    self.stats["failures"] += 1
                    self.error = f"{self.index}: {exc}"
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since >= self.stall_s:
                        self.state = "stalled"
                yield tick(0)  # the pipeline's chance to checkpoint while idle
                self._stop.wait(self.poll_s)
        finally:
            self.state = "done"

    # -- reading ----------------------------------------------------------------------------
    def _poll(self) -> Iterator[tuple[AuditRecord, list[Any] | None]]:
        """The records of the documents older than now - lag after the last one read,
        through one PIT, each with the sort values of the document before it."""
        self._count_untimed()
        until = datetime.fromtimestamp(self.clock() - self.lag_s, UTC)
        query = {"range": {self.time_field: {
            "lt": until.isoformat(timespec="milliseconds").replace("+00:00", "Z")}}}
        pit = self.es.open_point_in_time(index=self.index, keep_alive=self.keep_alive)
        pit_id = pit["id"]
        try:
            while not self._stop.is_set():
                self.stats["searches"] += 1
                answer = self.es.search(
                    pit={"id": pit_id, "keep_alive": self.keep_alive}, query=query,
                    sort=self.sort, search_after=self._after, size=self.page_size,
                    source={"includes": [self.event_field]}, track_total_hits=False)
                pit_id = answer.get("pit_id", pit_id)
                hits = answer["hits"]["hits"]
                for hit in hits:
                    before, self._after = self._after, hit["sort"]
                    self.stats["documents"] += 1
                    for record in self._records(hit):
                        yield record, before
                if len(hits) < self.page_size:
                    return
        finally:
            with contextlib.suppress(ApiError, TransportError):  # expires anyway
                self.es.close_point_in_time(id=pit_id)

    def _count_untimed(self) -> None:
        """Report the documents without ``time_field`` that no search can reach."""
        answer = self.es.count(index=self.index, query={
            "bool": {"must_not": [{"exists": {"field": self.time_field}}]}})
        untimed = int(answer["count"])
        if untimed > self.stats["untimed"]:
            self.bad.add("missing_time_field", self.index,
                         f"{untimed} document(s) without {self.time_field}: never read",
                         n=untimed - self.stats["untimed"])
            self.stats["untimed"] = untimed

    def _records(self, hit: dict[str, Any]) -> Iterator[AuditRecord]:
        where = f"{hit.get('_index', '?')}/{hit.get('_id', '?')}"
        event: Any = hit.get("_source") or {}
        for part in self.event_field.split("."):
            event = event.get(part) if isinstance(event, dict) else None
        if not isinstance(event, dict):
            self.bad.add("not_an_audit_event", where, f"no object at {self.event_field}")
            return
        first = True
        for item in decode_document(event, where):
            if isinstance(item, BadRecord):
                self.bad.add(item.reason, where, str(item), event)
                continue
            if first and self.keep_lines:  # the event as one audit line
                item.raw = orjson.dumps({"kind": "Event", "apiVersion": event.get(
                    "apiVersion", "audit.k8s.io/v1"), **event})
            first = False
            yield item
