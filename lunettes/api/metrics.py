"""PipelineCollector: the pipeline's own health as Prometheus metrics, read at scrape time.

- ``lunettes_audit_records_read_total``: audit records read.
- ``lunettes_audit_bad_records_total{reason}``: records that could not be used, by reason.
- ``lunettes_audit_duplicate_records_total``: records dropped as duplicates.
- ``lunettes_pods_in_flight``: Pods being followed (not yet final).
- ``lunettes_audit_newest_timestamp_seconds``: the newest audit timestamp read.
- ``lunettes_audit_lag_seconds``: the processing clock minus that timestamp: how far behind
  a live log lunettes is (meaningless, and large, when replaying old logs).
- ``lunettes_source_state{source,state}``: 1 for each source's current state (``reading``,
  ``following``, ``stalled``, ``failed``, ``done``...), 0 for the others: alert on
  ``lunettes_source_state{state=~"stalled|failed"} == 1``.
- ``lunettes_nats_publish_failures_total{source}``: webhook batches JetStream did not store
  (answered 503: the server unreachable, no acknowledgement in time, or a negative one),
  for the sources that publish (``publish_failures`` not None).

The collector reads the pipeline's counters without locks (a snapshot copy each scrape)
while the pipeline runs in another thread. The clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lunettes.sources.base import STATES, Source
from lunettes.sources.errors import BadRecords

__all__ = ["PipelineCollector", "PipelineView"]


class PipelineView(Protocol):
    """What the collector reads of a Pipeline."""

    @property
    def stats(self) -> dict[str, int]: ...

    @property
    def newest_us(self) -> int | None: ...

    @property
    def pods_in_flight(self) -> int: ...

    @property
    def sources(self) -> list[Source]: ...


class PipelineCollector(Collector):
    """Reads ``pipeline`` (stats, watermark, pods in flight) and the source's ``bad``."""

    def __init__(self, pipeline: PipelineView, bad: BadRecords | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.pipeline = pipeline
        self.bad = bad
        self.clock = clock

    def describe(self) -> Iterator[Metric]:
        return iter(self._families({}, {}, 0, None))

    def collect(self) -> Iterator[Metric]:
        stats = dict(self.pipeline.stats)  # one C-level copy: safe against a running writer
        bad = dict(self.bad.counts) if self.bad is not None else {}
        families = self._families(stats, bad, self.pipeline.pods_in_flight,
                                  self.pipeline.newest_us)
        state = GaugeMetricFamily("lunettes_source_state",
                                  "1 for the current state of each source.",
                                  labels=["source", "state"])
        failures = CounterMetricFamily("lunettes_nats_publish_failures",
                                       "Webhook batches JetStream did not store.",
                                       labels=["source"])
        for source in self.pipeline.sources:
            now = source.state
            for name in STATES:
                state.add_metric([source.name, name], 1.0 if name == now else 0.0)
            count = getattr(source, "publish_failures", None)
            if count is not None:
                failures.add_metric([source.name], count)
        return iter([*families, state, failures])

    def _families(self, stats: dict[str, int], bad: dict[str, int], in_flight: int,
                  newest_us: int | None) -> list[Metric]:
        read = CounterMetricFamily("lunettes_audit_records_read", "Audit records read.",
                                   value=stats.get("records", 0))
        bad_family = CounterMetricFamily("lunettes_audit_bad_records",
                                         "Audit records that could not be used, by reason.",
                                         labels=["reason"])
        for reason, count in sorted(bad.items()):
            bad_family.add_metric([reason], count)
        duplicates = CounterMetricFamily("lunettes_audit_duplicate_records",
                                         "Audit records dropped as duplicates.",
                                         value=stats.get("duplicate", 0))
        late = CounterMetricFamily("lunettes_audit_late_records",
                                   "Audit records behind the reorder window (where: /healthz "
                                   "late_records, the dead letter).",
                                   value=stats.get("late", 0))
        flight = GaugeMetricFamily("lunettes_pods_in_flight",
                                   "Pods being followed, not yet final.", value=in_flight)
        newest = GaugeMetricFamily("lunettes_audit_newest_timestamp_seconds",
                                   "The newest audit timestamp read (the audit clock).")
        lag = GaugeMetricFamily("lunettes_audit_lag_seconds",
                                "Processing clock minus the newest audit timestamp read.")
        if newest_us is not None:
            newest.add_metric([], newest_us / 1e6)
            lag.add_metric([], max(0.0, self.clock() - newest_us / 1e6))
        return [read, bad_family, duplicates, late, flight, newest, lag]
