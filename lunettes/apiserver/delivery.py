"""When Pod delivery gets slower: the window, and the combination of node, node pool, image
registry, namespace, owner kind and stage that explains it.

The signal is the mean delivery time of the Pods created in each interval (records whose
delivery ended); its anomalous windows come from :mod:`.anomaly` (no seasonality unless a
period is given). In a window, each stage instance of each Pod is a leaf whose real measure
is its seconds and whose expected measure is the mean seconds of that stage over the
intervals outside every window: :func:`~lunettes.apiserver.drilldown.explain` then names
what holds the extra seconds.

The node pool is the node's name without its last ``-`` segment (``gpu-a-07`` ->
``gpu-a``; GKE ``gke-prod-pool-1-8d2f-x1b2`` -> ``gke-prod-pool-1-8d2f``): audit logs carry
no node labels. The registry is the first part of an image name when it holds a dot, a
colon or is ``localhost``, else ``docker.io``; stages other than image pulls carry the
registry of the Pod's first image.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from lunettes.apiserver.anomaly import Baseline, Window, detect
from lunettes.apiserver.drilldown import Culprit, Leaf, explain
from lunettes.model.times import format_time, parse_time

DELIVERY_DIMENSIONS: Final = ("node", "node_pool", "registry", "namespace", "owner_kind",
                              "stage")
ROOT_STAGE = "delivery"
NONE = "-"


def registry_of(image: str) -> str:
    """``r.example.com/team/app:v1`` -> ``r.example.com``; ``nginx:1.27`` -> ``docker.io``."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io" if image else NONE


def pool_of(node: str) -> str:
    """The node's name without its last ``-`` segment (the node pool, by naming)."""
    head, sep, _ = node.rpartition("-")
    return head if sep and head else (node or NONE)


@dataclass(frozen=True)
class StageTime:
    """One closed stage instance of one delivered Pod."""

    created_us: int
    attributes: Leaf  # values of DELIVERY_DIMENSIONS
    seconds: float


def stage_times(record: Mapping[str, Any]) -> tuple[float | None, list[StageTime]]:
    """The delivery seconds of a pod record (JSON shape) and its closed stages."""
    created = record.get("created")
    if not created:
        return None, []
    created_us = parse_time(created)
    stages = record.get("stages") or []
    images = [s.get("instance", "") for s in stages if s.get("instance_kind") == "image"]
    pod_registry = registry_of(images[0]) if images else NONE
    node = record.get("node") or NONE
    base = (node, pool_of(node) if node != NONE else NONE)
    tail = (record.get("namespace") or NONE, record.get("owner_kind") or NONE)
    found = []
    for stage in stages:
        seconds = stage.get("duration_s")
        if seconds is None or stage.get("name") == ROOT_STAGE:
            continue
        registry = registry_of(stage.get("instance", "")) if stage.get(
            "instance_kind") == "image" else pod_registry
        found.append(StageTime(created_us, (*base, registry, *tail, stage["name"]),
                               float(seconds)))
    return record.get("duration_s"), found


@dataclass(frozen=True)
class DeliveryRegression:
    """An anomalous window of mean delivery time, and what explains its extra seconds."""

    window: Window
    mean_s: float
    expected_mean_s: float
    p99_s: float
    reference_p99_s: float
    culprits: list[Culprit]


@dataclass
class DeliveryAnalysis:
    interval_s: int
    start_s: int
    pods: np.ndarray
    mean_s: np.ndarray
    fit: Baseline
    regressions: list[DeliveryRegression]


def analyze_delivery(records: Iterable[Mapping[str, Any]], interval_s: int = 300,
                     period: int | None = 0, threshold: float = 4.0) -> DeliveryAnalysis:
    """Windows where Pods created in them took longer to deliver, each explained."""
    durations: dict[int, list[float]] = defaultdict(list)
    stages: dict[int, list[StageTime]] = defaultdict(list)
    interval_us = interval_s * 1_000_000
    for record in records:
        seconds, times = stage_times(record)
        if seconds is None or not times:
            continue
        index = times[0].created_us // interval_us
        durations[index].append(float(seconds))
        stages[index].extend(times)
    if not durations:
        empty = np.zeros(0)
        return DeliveryAnalysis(interval_s, 0, empty, empty, Baseline(empty, empty, empty, None),
                                [])
    first, last = min(durations), max(durations)
    span = range(first, last + 1)
    pods = np.array([len(durations.get(i, ())) for i in span], dtype=float)
    means = np.array([float(np.mean(durations[i])) if durations.get(i) else np.nan
                      for i in span])
    filled = np.where(np.isnan(means), np.nanmedian(means), means)
    fit, found = detect(filled, period, threshold, counts=False)
    hot = {first + i for w in found for i in w.indices()}
    reference = [i for i in span if i not in hot]
    stage_mean: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for i in reference:
        for item in stages.get(i, ()):
            entry = stage_mean[item.attributes[-1]]
            entry[0] += item.seconds
            entry[1] += 1
    ref_durations = [d for i in reference for d in durations.get(i, ())]
    ref_p99 = float(np.quantile(ref_durations, 0.99)) if ref_durations else 0.0
    regressions = []
    for window in found:
        indices = [first + i for i in window.indices()]
        leaves: dict[Leaf, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for i in indices:
            for item in stages.get(i, ()):
                total, count = stage_mean.get(item.attributes[-1], (0.0, 0.0))
                leaf = leaves[item.attributes]
                leaf[0] += item.seconds
                leaf[1] += total / count if count else item.seconds
        in_window = [d for i in indices for d in durations.get(i, ())]
        regressions.append(DeliveryRegression(
            window, float(np.mean(in_window)),
            float(fit.expected[window.start:window.end].mean()),
            float(np.quantile(in_window, 0.99)), ref_p99,
            explain({k: (r, e) for k, (r, e) in leaves.items()}, DELIVERY_DIMENSIONS)))
    return DeliveryAnalysis(interval_s, first * interval_s, pods, filled, fit, regressions)


def delivery_json(analysis: DeliveryAnalysis) -> dict[str, Any]:
    """The delivery report as plain data."""
    step = analysis.interval_s

    def at(index: int) -> str:
        return format_time((analysis.start_s + index * step) * 1_000_000)

    n = len(analysis.pods)
    return {
        "interval_s": step, "pods": int(analysis.pods.sum()),
        "start": at(0) if n else None, "end": at(n) if n else None,
        "series": {"pods": [int(v) for v in analysis.pods],
                   "mean_s": [round(float(v), 3) for v in analysis.mean_s],
                   "expected_s": [round(float(v), 3) for v in analysis.fit.expected]},
        "regressions": [{
            "start": at(r.window.start), "end": at(r.window.end),
            "score": round(r.window.score, 3), "mean_s": round(r.mean_s, 2),
            "expected_mean_s": round(r.expected_mean_s, 2), "p99_s": round(r.p99_s, 2),
            "reference_p99_s": round(r.reference_p99_s, 2),
            "culprits": [{"attributes": c.attributes, "expected_s": round(c.expected, 1),
                          "real_s": round(c.real, 1), "difference": round(c.difference, 1),
                          "share": round(c.share, 3), "purity": round(c.purity, 3),
                          "surprise": round(c.surprise, 4), "support": round(c.support, 1)}
                         for c in r.culprits]} for r in analysis.regressions]}
