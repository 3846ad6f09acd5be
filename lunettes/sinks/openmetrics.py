"""OpenMetricsFileSink: the Prometheus sink's metrics over audit time, as a backfill file.

Needs the ``prometheus`` extra. Pod records are counted as the :class:`PrometheusSink`
counts them, and every ``interval_s`` of audit time (the time a record became final:
its finish, or the last time it was seen) a snapshot of every series is taken, cumulative,
stamped with that audit time. On shutdown the file is written in the OpenMetrics text
format that ``promtool tsdb create-blocks-from openmetrics FILE DIR`` backfills: each
family once, each series' points in time order, ``_total``/``_bucket``/``_count``/``_sum``
samples and ``_created`` (the audit time the series first appeared), ending in ``# EOF``.

Samples are written only while there is something to say: from ``hold_s`` of audit time
before a record to ``hold_s`` after one (5 minutes by default: Prometheus' lookback, so an
instant query or a ``[5m]`` range at any time a record was made finds the same samples as
if every interval were written, and a series neither vanishes right after a change nor
starts from nothing right before one). An idle gap longer than that is left empty, so the
file grows with the records, not with the time between them: two records months apart
make a few dozen snapshots, not one per minute of the gap. Snapshots are kept in memory
until shutdown (one tuple of numbers per series per written interval).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from lunettes.model.record import PodRecord
from lunettes.private_files import open_private
from lunettes.sinks.base import SinkClosedError
from lunettes.sinks.prometheus import PrometheusSink

__all__ = ["OpenMetricsFileSink", "record_time_us"]

_S = 1_000_000
DEFAULT_HOLD_S = 300
"""Prometheus' default lookback delta (``--query.lookback-delta``)."""


def record_time_us(record: PodRecord) -> int | None:
    """The audit time a pod record became final (its finish or last sighting)."""
    times = [t for t in (record.finished_us, record.last_seen_us, record.created_us)
             if t is not None]
    return max(times) if times else None


@dataclass
class _Series:
    samples: list[tuple[str, tuple[tuple[str, str], ...]]]
    created_s: float
    points: list[tuple[float, tuple[float, ...]]] = field(default_factory=list)


@dataclass
class _Family:
    type: str
    documentation: str
    unit: str
    series: dict[tuple[tuple[str, str], ...], _Series] = field(default_factory=dict)


class _Snapshots:
    """Snapshots of one registry's series over one audit clock (see the module
    docstring): :meth:`advance` before each change, :meth:`last` at the end."""

    def __init__(self, registry: CollectorRegistry, interval_us: int, hold_us: int) -> None:
        self.registry = registry
        self.interval_us = interval_us
        self.hold_us = hold_us
        self.families: dict[str, _Family] = {}
        self._boundary_us: int | None = None
        self._last_us = 0

    def advance(self, when_us: int) -> None:
        """Snapshot the interval boundaries passed before ``when_us`` that lie within
        ``hold_us`` after the previous change or before this one; skip the rest."""
        interval = self.interval_us
        if self._boundary_us is None:
            self._boundary_us = (when_us // interval + 1) * interval
            self._last_us = when_us
            return
        lead_from = -(-(when_us - self.hold_us) // interval) * interval  # first one >= it
        while when_us >= self._boundary_us:
            if self._boundary_us <= self._last_us + self.hold_us \
                    or self._boundary_us >= lead_from:
                self._snapshot(self._boundary_us)
                self._boundary_us += interval
            else:  # an idle gap: nothing to say until the lead-in of this record
                self._boundary_us = lead_from
        self._last_us = max(self._last_us, when_us)

    def last(self) -> None:
        """The snapshot after the last change."""
        if self._boundary_us is not None:
            self._snapshot(self._boundary_us)

    def _snapshot(self, at_us: int) -> None:
        at_s = at_us / _S
        for metric in self.registry.collect():
            family = self.families.get(metric.name)
            if family is None:
                family = self.families[metric.name] = _Family(
                    metric.type, metric.documentation, metric.unit)
            grouped: dict[tuple[tuple[str, str], ...],
                          list[tuple[str, tuple[tuple[str, str], ...], float]]] = {}
            for sample in metric.samples:
                if sample.name.endswith("_created"):
                    continue
                labels = tuple(sorted(sample.labels.items()))
                key = tuple(kv for kv in labels if kv[0] != "le")
                grouped.setdefault(key, []).append((sample.name, labels, sample.value))
            for key, samples in grouped.items():
                series = family.series.get(key)
                if series is None:
                    series = family.series[key] = _Series(
                        [(n, ls) for n, ls, _ in samples], at_s - self.interval_us / _S)
                if [(n, ls) for n, ls, _ in samples] != series.samples:
                    continue  # a series never changes shape; skip rather than corrupt
                series.points.append((at_s, tuple(v for _, _, v in samples)))


class OpenMetricsFileSink:
    """Writes ``path`` on shutdown (see the module docstring); ``interval_s`` is the audit
    time between snapshots, ``hold_s`` how long before and after a record they are taken.
    ``force_flush`` writes nothing: a backfill file is complete only when the run is.
    :meth:`track` adds the metrics of another collector, over its own audit clock."""

    def __init__(self, path: str | Path, interval_s: int = 60, *, max_namespaces: int = 200,
                 max_classes: int = 50, slo_key: str = "slo",
                 diagnosis_key: str = "diagnosis", hold_s: int = DEFAULT_HOLD_S) -> None:
        if interval_s < 1:
            raise ValueError("interval_s must be at least 1")
        if hold_s < 0:
            raise ValueError("hold_s must not be negative")
        self.path = Path(path)
        self.interval_us = interval_s * _S
        self.hold_us = hold_s * _S
        self.registry = CollectorRegistry()
        self.metrics = PrometheusSink(self.registry, max_namespaces=max_namespaces,
                                      max_classes=max_classes, slo_key=slo_key,
                                      diagnosis_key=diagnosis_key)
        self._pods = _Snapshots(self.registry, self.interval_us, self.hold_us)
        self._clocks = [self._pods]
        self._closed = False

    def track(self, collector: Collector) -> Callable[[int], None]:
        """Backfill ``collector``'s metrics too (names of their own); returns what to call
        with the audit time (microseconds) before each change of them."""
        registry = CollectorRegistry()
        registry.register(collector)
        clock = _Snapshots(registry, self.interval_us, self.hold_us)
        self._clocks.append(clock)
        return clock.advance

    @property
    def families(self) -> dict[str, _Family]:
        """Every family snapshotted so far, by name."""
        out: dict[str, _Family] = {}
        for clock in self._clocks:
            out.update(clock.families)
        return out

    def export(self, batch: Sequence[PodRecord]) -> None:
        if self._closed:
            raise SinkClosedError(f"openmetrics file {self.path} is shut down")
        for record in batch:
            when = record_time_us(record)
            if when is not None:
                self._pods.advance(when)
            self.metrics.observe(record)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return not self._closed

    def shutdown(self) -> None:
        """Take the last snapshot and write the file (safe twice)."""
        if self._closed:
            return
        self._closed = True
        for clock in self._clocks:
            clock.last()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_private(self.path, "w", encoding="utf-8") as out:
            self.write(out)

    def write(self, out: IO[str]) -> None:
        """The OpenMetrics text of every snapshot taken so far."""
        families = self.families
        for name in sorted(families):
            family = families[name]
            if not any(s.points for s in family.series.values()):
                continue
            out.write(f"# TYPE {name} {family.type}\n")
            if family.unit:
                out.write(f"# UNIT {name} {family.unit}\n")
            out.write(f"# HELP {name} {_escape(family.documentation)}\n")
            created = family.type in ("counter", "histogram", "summary")
            for key in sorted(family.series):
                series = family.series[key]
                for at_s, values in series.points:
                    stamp = _stamp(at_s)
                    for (sample, labels), value in zip(series.samples, values, strict=True):
                        out.write(f"{sample}{_labels(labels)} {floatToGoString(value)} "
                                  f"{stamp}\n")
                    if created:
                        out.write(f"{name}_created{_labels(key)} "
                                  f"{_stamp(series.created_s)} {stamp}\n")
        out.write("# EOF\n")


def _stamp(seconds: float) -> str:
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def _escape(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"
