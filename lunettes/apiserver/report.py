"""One run of the load analysis over audit logs, and its report as plain data (JSON)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lunettes.apiserver.anomaly import Baseline
from lunettes.apiserver.drilldown import Culprit
from lunettes.apiserver.load import Anomaly, find_anomalies
from lunettes.apiserver.requests import RequestTables
from lunettes.apiserver.series import DIMENSIONS, Series
from lunettes.model.times import format_time
from lunettes.sources.errors import BadRecords


@dataclass
class LoadAnalysis:
    """Series, tables, baseline and anomalous windows of one set of audit logs."""

    series: Series
    tables: RequestTables
    fit: Baseline
    anomalies: list[Anomaly]
    where: dict[str, str]
    bad: BadRecords = field(default_factory=BadRecords)


def explain(series: Series, tables: RequestTables, period: int | None = None,
            threshold: float = 4.0, where: dict[str, str] | None = None,
            bad: BadRecords | None = None) -> LoadAnalysis:
    """Find and explain the anomalous windows of counted requests' series (the total, or
    the slice ``where``)."""
    fit, anomalies = find_anomalies(series, where, period, threshold)
    return LoadAnalysis(series, tables, fit, anomalies, where or {}, bad or BadRecords())


def analyze_paths(paths: Iterable[str], bad: BadRecords | None = None,
                  interval_s: int = 60, top_k: int = 25, **options: Any) -> LoadAnalysis:
    """The analysis of audit log files, directories or ``-`` (read by a
    :class:`~lunettes.apiserver.stream.RequestStream`, as replay's ``--apiserver-load``
    reads the pipeline's lines); bad lines are counted in ``bad``; ``options`` as
    :func:`explain`'s."""
    from lunettes.apiserver.stream import RequestStream

    stream = RequestStream(interval_s, top_k, bad=bad)
    stream.read(paths)
    return stream.analysis(**options)


def _time(series: Series, index: int) -> str:
    return format_time((series.start_s + index * series.interval_s) * 1_000_000)


def culprit_json(culprit: Culprit, seconds: float) -> dict[str, Any]:
    """A culprit with its measures as rates per second of the window."""
    return {"attributes": culprit.attributes,
            "expected_rate": round(culprit.expected / seconds, 4),
            "real_rate": round(culprit.real / seconds, 4),
            "difference": round(culprit.difference, 1), "share": round(culprit.share, 3),
            "purity": round(culprit.purity, 3), "surprise": round(culprit.surprise, 4),
            "support": round(culprit.support)}


def to_json(analysis: LoadAnalysis, top: int = 10, min_count: int = 5) -> dict[str, Any]:
    """The report: totals, the series with its baseline, the anomalous windows with their
    culprits, and the tables of slow and rejected requests (``top`` rows each; slow
    requests with at least ``min_count`` requests)."""
    series, tables = analysis.series, analysis.tables
    n = len(series.total)
    anomalies = []
    for anomaly in analysis.anomalies:
        w = anomaly.window
        seconds = (w.end - w.start) * series.interval_s
        anomalies.append({
            "start": _time(series, w.start), "end": _time(series, w.end),
            "score": round(w.score, 3), "peak_z": round(w.peak_z, 2),
            "requests": round(anomaly.real), "expected": round(anomaly.expected, 1),
            "culprits": [culprit_json(c, seconds) for c in anomaly.culprits]})
    slow = sorted(((key, h) for key, h in tables.slow.items() if h.count >= min_count),
                  key=lambda item: (-(item[1].quantile_s(0.99) or 0), item[0]))[:top]
    minutes = max(n * series.interval_s / 60, 1e-9)
    return {
        "interval_s": series.interval_s,
        "start": _time(series, 0) if n else None, "end": _time(series, n) if n else None,
        "requests": int(series.total.sum()), "bad_records": analysis.bad.total,
        "where": analysis.where,
        "guard": {"overflow": series.overflow + tables.overflow,
                  "folded": dict(series.folded)},
        "period": analysis.fit.period,
        "series": {"total": [int(v) for v in series.slice(analysis.where)],
                   "expected": [round(float(v), 2) for v in analysis.fit.expected],
                   "z": [round(float(v), 2) for v in analysis.fit.z]},
        "top": {name: [{"value": v, "requests": c} for v, c in series.top(name, top)]
                for name in DIMENSIONS},
        "anomalies": anomalies,
        "slow": [{"uri": uri, "user_agent": client, "count": h.count,
                  "mean_s": round(h.mean_s or 0, 4), "p99_s": round(h.quantile_s(0.99) or 0, 4)}
                 for (uri, client), h in slow],
        "rejected": [{"user_agent": c, "user": u, "verb": v, "resource": r, "count": k}
                     for (c, u, v, r), k in tables.rejected.most_common(top)],
        "apf_queue_wait": [{"user_agent": client, "count": h.count,
                            "mean_s": round(h.mean_s or 0, 6),
                            "p99_s": round(h.quantile_s(0.99) or 0, 6)}
                           for client, h in sorted(tables.queue_wait.items(),
                                                   key=lambda i: -i[1].total_us)[:top]],
        "controllers": [{"controller": name, "requests": k,
                         "per_minute": round(k / minutes, 2)}
                        for name, k in tables.controllers.most_common(top)],
        "unbounded_lists": [{"user_agent": c, "resource": r, "count": k}
                            for (c, r), k in tables.unbounded.most_common(top)],
    }
