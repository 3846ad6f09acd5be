"""Cumulative request counts for Prometheus, from the load analysis' closed intervals.

Counters must never go down, so a request is counted once its interval is closed (see
:class:`~lunettes.apiserver.series.SeriesBuilder`: the newest two intervals stay open for
late records): by then its interval kept the top ``top_k`` values of each dimension, the
rest under ``(other)``. On top of that each label admits at most ``max_values`` distinct
values over the whole run (the first ones counted); later ones count as ``other``, and
:attr:`RequestCounts.folded` counts the requests folded per label. A late record for a
closed interval is counted at once (a watch is written when it ends: most are late).

- ``requests``: (client, verb, resource, code, scope) -> requests;
- ``rejected``: requests answered 429 by (client, verb, resource);
- ``unbounded``: cluster-wide LISTs without limit or resourceVersion by (client, resource);
- ``latency``: (verb, resource) -> counts per :data:`LATENCY_BUCKETS` bucket, then above
  the last bound, then the sum in microseconds (exact: integers; long-running requests
  left out).

No prometheus_client here: :mod:`lunettes.apiserver.metrics` exposes these.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from typing import Final

from lunettes.apiserver import DIMENSIONS
from lunettes.apiserver.clients import client_of
from lunettes.apiserver.requests import is_unbounded_list
from lunettes.apiserver.scan import RequestFacts

LATENCY_BUCKETS: Final = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0,
                          3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
"""kube-apiserver's buckets of apiserver_request_duration_seconds (comparable panels)."""
OTHER: Final = "other"
LABELS: Final = ("client", "verb", "resource", "code", "scope")
_BOUNDS_US = tuple(round(b * 1e6) for b in LATENCY_BUCKETS)
_D = {name: DIMENSIONS.index(name) for name in ("user_agent", "verb", "resource", "scope",
                                                  "code")}
_MAX_OPEN = 10_000  # latency keys per open interval before new ones count as other


class LabelGuard:
    """Admits up to ``limit`` distinct values of one label; the others read ``other``."""

    __slots__ = ("admitted", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: set[str] = set()

    def __call__(self, value: str) -> str:
        """The label value for ``value`` (it takes a free place if there is one)."""
        if value in self.admitted:
            return value
        if len(self.admitted) < self.limit and value != "(other)":
            self.admitted.add(value)
            return value
        return OTHER


class _Open:
    __slots__ = ("latency", "unbounded")

    def __init__(self) -> None:
        self.latency: dict[tuple[str, str], list[int]] = {}
        self.unbounded: Counter[tuple[str, str]] = Counter()


class RequestCounts:
    """See the module docstring. ``before_close(us)`` (if set) is called with the audit
    time just before an interval's counts are added (its end, less a microsecond): the
    OpenMetrics backfill takes its snapshots there."""

    def __init__(self, interval_s: int = 60, max_values: int = 50) -> None:
        self.interval_us = interval_s * 1_000_000
        self.guards = {name: LabelGuard(max_values) for name in LABELS}
        self.requests: Counter[tuple[str, str, str, str, str]] = Counter()
        self.rejected: Counter[tuple[str, str, str]] = Counter()
        self.unbounded: Counter[tuple[str, str]] = Counter()
        self.latency: dict[tuple[str, str], list[int]] = {}
        self.folded: Counter[str] = Counter()
        self.before_close: Callable[[int], None] | None = None
        self._open: dict[int, _Open] = {}
        self._closed_below = 0  # intervals below this index are closed

    def observe(self, facts: RequestFacts, index: int, n: int = 1,
                latencies: list[int] | None = None) -> None:
        """What the joint counts do not hold: latency by verb and resource, unbounded
        LISTs, of ``n`` requests like ``facts`` (``latencies`` replaces
        ``facts.latency_us`` when given); ``index`` is their interval."""
        if latencies is None:
            latencies = [] if facts.latency_us is None else [facts.latency_us]
        unbounded = facts.verb == "list" and is_unbounded_list(facts)
        if not latencies and not unbounded:
            return
        resource = facts.resource or "(non-resource)"
        if facts.subresource:
            resource = f"{resource}/{facts.subresource}"
        if index < self._closed_below:  # late: counted at once
            if latencies:
                self._latency(self.latency, self._guard("verb", facts.verb),
                              self._guard("resource", resource), latencies)
            if unbounded:
                self.unbounded[self._guard("client", client_of(facts.user_agent)),
                               self._guard("resource", resource)] += n
            return
        item = self._open.get(index)
        if item is None:
            item = self._open[index] = _Open()
        if latencies:
            self._latency(item.latency, facts.verb, resource, latencies)
        if unbounded:
            item.unbounded[client_of(facts.user_agent), resource] += n

    @staticmethod
    def _latency(table: dict[tuple[str, str], list[int]], verb: str, resource: str,
                 latencies: list[int]) -> None:
        key = (verb, resource)
        counts = table.get(key)
        if counts is None:
            if len(table) >= _MAX_OPEN:
                key = (OTHER, OTHER)
                counts = table.get(key)
            if counts is None:
                counts = table[key] = [0] * (len(_BOUNDS_US) + 2)
        for latency_us in latencies:  # per bucket here; cumulated on read
            counts[bisect_left(_BOUNDS_US, latency_us)] += 1
        counts[-1] += sum(latencies)

    def _guard(self, label: str, value: str, n: int = 1) -> str:
        out = self.guards[label](value)
        if out == OTHER and value != OTHER:
            self.folded[label] += n
        return out

    def close(self, index: int, joint: Counter[tuple[str, ...]]) -> None:
        """Add a closed interval's joint counts (already folded to its top values)."""
        if self.before_close is not None:
            self.before_close((index + 1) * self.interval_us - 1)
        self._closed_below = max(self._closed_below, index + 1)
        self.add_joint(joint)
        item = self._open.pop(index, None)
        if item is None:
            return
        for (verb, resource), counts in item.latency.items():
            key = (self._guard("verb", verb, n=sum(counts[:-1])),
                   self._guard("resource", resource, n=sum(counts[:-1])))
            total = self.latency.get(key)
            if total is None:
                total = self.latency[key] = [0] * len(counts)
            for i, n in enumerate(counts):
                total[i] += n
        for (client, resource), n in item.unbounded.items():
            self.unbounded[self._guard("client", client, n=n),
                           self._guard("resource", resource, n=n)] += n

    def add_joint(self, joint: Counter[tuple[str, ...]]) -> None:
        """Count requests by their joint keys."""
        d = _D
        for key, n in joint.items():
            client = self._guard("client", key[d["user_agent"]], n)
            verb = self._guard("verb", key[d["verb"]], n)
            resource = self._guard("resource", key[d["resource"]], n)
            code = self._guard("code", key[d["code"]], n)
            scope = key[d["scope"]]
            self.requests[client, verb, resource, code, scope] += n
            if code == "429":
                self.rejected[client, verb, resource] += n

    def cumulative_buckets(self, counts: list[int]) -> list[int]:
        """Per-bucket counts (the last two: above every bound, then the sum) as
        cumulative counts per bound, +Inf last."""
        out, running = [], 0
        for n in counts[:-1]:
            running += n
            out.append(running)
        return out
