"""The SLO summary of a window: counts by result, success ratio and delivery-time
percentiles, by namespace and SLO class, from a store's :class:`SLORow` rows.

- ``success_ratio`` is met / (met + violated): the Pods the platform delivered in time
  among those it had to deliver (``killed``, ``in_progress`` and ``not_applicable`` have
  no verdict; None when there is none);
- ``delivery_s`` holds p50/p90/p99 of the platform time (``platform_s``, what the SLO
  measures) and ``total_s`` of the whole creation-to-delivery time, over the Pods that
  were delivered (outcome ``delivered`` or ``completed``); percentiles interpolate
  linearly between ranks (numpy's default ``linear`` method), exactly.

:func:`summarize` reads rows. The SQLite store computes the same figures in SQL
(:meth:`lunettes.api.store.SQLiteStore.slo_summary`: counts by GROUP BY, and for each
percentile only the two values around its rank, found by a window function), the
Elasticsearch store by aggregations
(:meth:`lunettes.api.es_store.ElasticsearchStore.slo_summary`), so a summary costs memory
by the number of groups, not of Pods. :func:`figures` builds one group's figures from
either (:func:`group_view` from ranks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lunettes.api.store import SLORow

__all__ = ["DELIVERED", "QUANTILES", "RESULTS", "figures", "group_view", "percentile",
           "rank_bounds", "summarize"]

RESULTS = ("met", "violated", "killed", "in_progress", "not_applicable")
DELIVERED = frozenset({"delivered", "completed"})
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def percentile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values (linear interpolation), None when empty."""
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


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


class _Group:
    def __init__(self) -> None:
        self.results: Counter[str] = Counter()
        self.platform: list[float] = []
        self.total: list[float] = []

    def add(self, row: SLORow) -> None:
        self.results[row.result] += 1
        if row.outcome in DELIVERED:
            if row.platform_s is not None:
                self.platform.append(row.platform_s)
            if row.total_s is not None:
                self.total.append(row.total_s)

    def view(self) -> dict[str, Any]:
        self.platform.sort()
        self.total.sort()
        return group_view(self.results, (len(self.platform), dict(enumerate(self.platform))),
                          (len(self.total), dict(enumerate(self.total))))


def summarize(rows: Iterable[SLORow]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the overall figures, the figures of each (namespace, class), sorted)."""
    overall = _Group()
    groups: dict[tuple[str, str], _Group] = {}
    for row in rows:
        overall.add(row)
        key = (row.namespace, row.slo_class)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
        group.add(row)
    return overall.view(), [{"namespace": ns, "slo_class": cls, **groups[(ns, cls)].view()}
                            for ns, cls in sorted(groups)]
