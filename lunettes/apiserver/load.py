"""Anomalous windows of API server load and the clients that caused them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final

from lunettes.apiserver.anomaly import Baseline, Window, detect
from lunettes.apiserver.drilldown import Culprit, Leaf, explain
from lunettes.apiserver.series import DIMENSIONS, Series

DRILL_DIMENSIONS: Final = ("user_agent", "verb", "resource", "user", "namespace", "code")


@dataclass(frozen=True)
class Anomaly:
    """One anomalous window of a series: real and expected requests, and who explains it."""

    window: Window
    real: float
    expected: float
    culprits: list[Culprit]


def find_anomalies(series: Series, where: dict[str, str] | None = None,
                   period: int | None = None, threshold: float = 4.0,
                   reference: int = 60) -> tuple[Baseline, list[Anomaly]]:
    """The baseline of the total (or of the slice ``where``) and its anomalous windows, each
    explained by a drilldown against the ``reference`` intervals around it that are not
    anomalous themselves."""
    values = series.slice(where or {})
    fit, found = detect(values, period, threshold)
    anomalies = []
    for window in found:
        leaves = window_leaves(series, fit, window, found, reference, where or {})
        culprits = explain(leaves, DRILL_DIMENSIONS)
        span = window.indices()
        anomalies.append(Anomaly(window, float(values[span.start:span.stop].sum()),
                                 float(fit.expected[span.start:span.stop].sum()), culprits))
    return fit, anomalies


def window_leaves(series: Series, fit: Baseline, window: Window, anomalous: list[Window],
                  reference: int, where: dict[str, str]) -> dict[Leaf, tuple[float, float]]:
    """Per combination of :data:`DRILL_DIMENSIONS`: requests in the window, and the requests
    expected there (its share of the reference intervals times the baseline's total)."""
    picks = [DIMENSIONS.index(d) for d in DRILL_DIMENSIONS]
    filters = [(DIMENSIONS.index(k), v) for k, v in where.items()]
    hot = {i for w in anomalous for i in w.indices()}
    around = range(max(0, window.start - reference), min(len(series.total),
                                                         window.end + reference))
    real = _project(series, window.indices(), picks, filters)
    ref = _project(series, [i for i in around if i not in hot], picks, filters)
    ref_total = sum(ref.values())
    expected_total = float(fit.expected[window.start:window.end].sum())
    return {key: (float(real.get(key, 0)),
                  ref.get(key, 0) / ref_total * expected_total if ref_total else 0.0)
            for key in real.keys() | ref.keys()}


def _project(series: Series, intervals: range | list[int], picks: list[int],
             filters: list[tuple[int, str]]) -> Counter[Leaf]:
    counts: Counter[Leaf] = Counter()
    for i in intervals:
        for key, n in series.joint[i].items():
            if all(key[d] == v for d, v in filters):
                counts[tuple(key[d] for d in picks)] += n
    return counts
