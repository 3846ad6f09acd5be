"""PrometheusSink: pod records -> Prometheus metrics in an injected CollectorRegistry.

Needs the ``prometheus`` extra (``pip install 'lunettes[prometheus]'``). It observes every
exported pod record; nothing is labelled per Pod. Metrics:

- ``lunettes_pods_total{outcome}``: pod records by outcome.
- ``lunettes_pod_slo_results_total{namespace, slo_class, result, reason}``: SLO verdicts
  (``result`` also ``not_applicable``, class ``none`` then); ``reason`` is the diagnosis'
  reason code when a ``diagnosis`` result is in the record, else ``none``.
- ``lunettes_pod_delivery_duration_seconds{slo_class}`` and
  ``lunettes_pod_delivery_platform_duration_seconds{slo_class}``: creation -> delivery of
  delivered Pods, in total and without user time (0.5 s to 1 h buckets).
- ``lunettes_pod_stage_duration_seconds{stage, owner}``: every closed stage, root included,
  whose whole duration the log shows (:meth:`PodRecord.measured_stages`: a partial Pod's
  root and its stages before its binding are left out).
- ``lunettes_pod_start_sli_duration_seconds``: the pod startup SLI, comparable with the
  kubelet's ``kubelet_pod_start_sli_duration_seconds`` (same buckets).

Every histogram observation carries an exemplar ``{trace_id="<the Pod's trace id>"}`` (32
hex digits: the UID), exposed in the OpenMetrics format: Grafana jumps from a latency
bucket to that Pod's trace in Jaeger.

A cardinality guard keeps the first ``max_namespaces`` namespaces (``max_classes`` classes,
``max_reasons`` reasons) seen and folds any later value into ``other``, so a cluster with
thousands of namespaces cannot blow up the series count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, write_to_textfile

from lunettes.analyzers.base import DIAGNOSIS, SLO
from lunettes.config.errors import Section
from lunettes.model.ids import trace_id
from lunettes.model.record import PodRecord
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError

__all__ = ["DELIVERY_BUCKETS", "SLI_BUCKETS", "STAGE_BUCKETS", "LabelGuard",
           "PrometheusSink"]

DELIVERY_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600,
                    900, 1200, 1800, 2700, 3600)
STAGE_BUCKETS = (0.05, 0.1, 0.25, *DELIVERY_BUCKETS)
SLI_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 180, 240, 300, 360, 480,
               600, 900, 1200, 1800, 2700, 3600)
"""The kubelet's buckets for kubelet_pod_start_sli_duration_seconds."""
OTHER = "other"


class LabelGuard:
    """Admits the first ``limit`` distinct values of a label; later ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: set[str] = set()
        self.folded = 0

    def __call__(self, value: str) -> str:
        if value in self.admitted:
            return value
        if len(self.admitted) < self.limit:
            self.admitted.add(value)
            return value
        self.folded += 1
        return OTHER


class PrometheusSink:
    """Observes pod records into ``registry`` (a private one when none is injected).

    ``slo_key``/``diagnosis_key`` name the record results read (the analyzers playing the
    slo and diagnosis roles).
    ``textfile``: on shutdown, write the registry there in the text format (for
    node_exporter's textfile collector after a batch replay).
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, max_namespaces: int = 200,
                 max_classes: int = 50, max_reasons: int = 100, max_stages: int = 100,
                 slo_key: str = "slo", diagnosis_key: str = "diagnosis",
                 textfile: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.slo_key = slo_key
        self.diagnosis_key = diagnosis_key
        self.textfile = textfile
        self.namespaces = LabelGuard(max_namespaces)
        self.classes = LabelGuard(max_classes)
        self.reasons = LabelGuard(max_reasons)
        self.stage_names = LabelGuard(max_stages)
        self._closed = False
        r = self.registry
        self.pods = Counter("lunettes_pods", "Pod records written, by outcome.", ["outcome"],
                            registry=r)
        self.results = Counter(
            "lunettes_pod_slo_results",
            "Delivery SLO verdicts (met, violated, killed, in_progress, not_applicable).",
            ["namespace", "slo_class", "result", "reason"], registry=r)
        self.delivery = Histogram(
            "lunettes_pod_delivery_duration_seconds",
            "Creation to delivery (Ready, or terminal phase) of delivered Pods.",
            ["slo_class"], buckets=DELIVERY_BUCKETS, registry=r)
        self.platform = Histogram(
            "lunettes_pod_delivery_platform_duration_seconds",
            "Creation to delivery of delivered Pods, without user time (the SLO's measure).",
            ["slo_class"], buckets=DELIVERY_BUCKETS, registry=r)
        self.stages = Histogram(
            "lunettes_pod_stage_duration_seconds", "Duration of closed delivery stages.",
            ["stage", "owner"], buckets=STAGE_BUCKETS, registry=r)
        self.sli = Histogram(
            "lunettes_pod_start_sli_duration_seconds",
            "Pod startup SLI as kubelet_pod_start_sli_duration_seconds: creation to all "
            "containers started, without image pulls and init containers.",
            buckets=SLI_BUCKETS, registry=r)

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext,
                    registry: CollectorRegistry | None = None) -> PrometheusSink:
        limits = {key: section.get(key, default, int) for key, default in (
            ("max_namespaces", 200), ("max_classes", 50), ("max_reasons", 100),
            ("max_stages", 100))}
        for key, value in limits.items():
            if value < 1:
                section.problem(key, "must be at least 1")
        # the results playing the slo and diagnosis roles in the pipeline
        slo_key, diagnosis_key = context.results.key(SLO), context.results.key(DIAGNOSIS)
        textfile = section.get("textfile", "", str)
        section.check_unknown()
        return cls(registry, slo_key=slo_key, diagnosis_key=diagnosis_key, textfile=textfile,
                   **limits)

    def export(self, batch: Sequence[PodRecord]) -> None:
        if self._closed:
            raise SinkClosedError("prometheus sink is shut down")
        for record in batch:
            self.observe(record)

    def observe(self, record: PodRecord) -> None:
        """Count one pod record."""
        self.pods.labels(record.outcome).inc()
        exemplar = {"trace_id": trace_id(record.uid).hex()}
        for stage in record.measured_stages():
            duration = stage.duration_s
            if duration is not None:
                self.stages.labels(self.stage_names(stage.name), stage.owner).observe(
                    duration, exemplar)
        slo: Any = record.results.get(self.slo_key)
        if not isinstance(slo, dict):
            return
        result = str(slo.get("result") or "")
        if not result:
            return
        slo_class = self.classes(str(slo.get("class") or "none")) if (
            result != "not_applicable") else "none"
        diagnosis: Any = record.results.get(self.diagnosis_key)
        reason = str(diagnosis.get("reason") or "none") if isinstance(diagnosis, dict) else "none"
        self.results.labels(self.namespaces(record.namespace), slo_class, result,
                            self.reasons(reason)).inc()
        total, platform = slo.get("total_s"), slo.get("platform_s")
        if slo.get("delivered") and total is not None and platform is not None:
            self.delivery.labels(slo_class).observe(total, exemplar)
            self.platform.labels(slo_class).observe(platform, exemplar)
        sli = slo.get("pod_start_sli_s")
        if sli is not None:
            self.sli.observe(sli, exemplar)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return not self._closed

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.textfile:
            write_to_textfile(self.textfile, self.registry)
