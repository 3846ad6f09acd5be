"""The SLO summary of a window: counts by result, success ratio and delivery-time
percentiles, by namespace and SLO class.

- ``success_ratio`` is met / (met + violated): the Pods the platform delivered in time
  among those it had to deliver (``killed``, ``in_progress`` and ``not_applicable`` have
  no verdict; None when there is none);
- ``delivery_s`` holds p50/p90/p99 of the platform time (``platform_s``, what the SLO
  measures) and ``total_s`` of the whole creation-to-delivery time, over the Pods that
  were delivered (outcome ``delivered`` or ``completed``); percentiles interpolate
  linearly between ranks (numpy's default ``linear`` method), exactly.

The SQLite store computes them in SQL
(:meth:`lunettes.api.store.SQLiteStore.slo_summary`: counts by GROUP BY, and for each
percentile only the two values around its rank, found by a window function), the
Elasticsearch store by aggregations
(:meth:`lunettes.api.es_store.ElasticsearchStore.slo_summary`), so a summary costs memory
by the number of groups, not of Pods. :func:`figures` builds one group's figures from
either (:func:`group_view` from ranks).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["DELIVERED", "QUANTILES", "RESULTS", "figures", "group_view", "rank_bounds"]

RESULTS = ("met", "violated", "killed", "in_progress", "not_applicable")
DELIVERED = frozenset({"delivered", "completed"})
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def rank_bounds(n: int, q: float) -> tuple[int, int]:
    """The 0-based ranks of the two values the ``q`` quantile of ``n`` values lies between."""
    low = int(q * (n - 1))
    return low, min(low + 1, n - 1)


def _from_ranks(n: int, values: dict[int, float], q: float) -> float | None:
    """The ``q`` quantile of ``n`` sorted values of which ``values`` holds (by rank) at
    least the two of :func:`rank_bounds`."""
    if not n:
        return None
    low, high = rank_bounds(n, q)
    rank = q * (n - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def group_view(results: Counter[str], platform: tuple[int, dict[int, float]],
               total: tuple[int, dict[int, float]]) -> dict[str, Any]:
    """One group's figures from its counts by result and, for platform and total time,
    (how many values, the values at the ranks :func:`rank_bounds` names)."""
    return figures(results, platform[0],
                   {k: _from_ranks(*platform, q) for k, q in QUANTILES},
                   {k: _from_ranks(*total, q) for k, q in QUANTILES})


def figures(results: Counter[str], delivered: int, delivery_s: dict[str, float | None],
            total_s: dict[str, float | None]) -> dict[str, Any]:
    """One group's figures from its counts by result, the number of delivered Pods with a
    platform time and the quantiles (by :data:`QUANTILES` name) of both times."""
    met, violated = results["met"], results["violated"]
    return {
        "count": sum(results.values()),
        "results": {r: results.get(r, 0) for r in RESULTS},
        "success_ratio": met / (met + violated) if met + violated else None,
        "delivered": delivered,
        "delivery_s": delivery_s,
        "total_s": total_s,
    }
