"""Requests per interval by dimension, in bounded memory.

Each interval of audit time (``requestReceivedTimestamp``) keeps the counts of the
combinations of :data:`DIMENSIONS` seen in it. While it is open (the newest two intervals:
audit logs of several API servers are a little out of order) it counts every combination, up
to ``max_open_keys``; past that, new combinations count under :data:`OTHER` for the
high-cardinality dimensions (``overflow``). When it closes, each dimension keeps its
``top_k`` values of that interval and the rest become :data:`OTHER` (``folded`` counts
the requests under it per dimension); then at most ``max_closed_keys`` combinations are
kept, the smallest merged under :data:`OTHER` for the high-cardinality dimensions. Memory
is thus bounded per interval, whatever the number of distinct userAgents or users.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from lunettes.apiserver import DIMENSIONS, MAX_INTERVALS, SpanTooLong
from lunettes.apiserver.clients import client_of
from lunettes.apiserver.scan import RequestFacts

OTHER: Final = "(other)"
NONE: Final = "-"
if TYPE_CHECKING:
    import numpy as np

_WIDE = tuple(i for i, name in enumerate(DIMENSIONS)
              if name in ("user_agent", "user", "resource", "namespace"))
_OPEN = 2  # intervals still open: the newest and the one before
Key = tuple[str, ...]


def dimensions_of(facts: RequestFacts) -> Key:
    """The values of :data:`DIMENSIONS` for one request."""
    resource = facts.resource or "(non-resource)"
    if facts.subresource:
        resource = f"{resource}/{facts.subresource}"
    scope = "object" if facts.name else "namespace" if facts.namespace else "cluster"
    return (client_of(facts.user_agent), facts.user or NONE, facts.verb, resource,
            facts.namespace or NONE, scope, str(facts.code))


def _widen(key: Key) -> Key:
    """The key with its high-cardinality dimensions replaced by :data:`OTHER`."""
    values = list(key)
    for i in _WIDE:
        values[i] = OTHER
    return tuple(values)


class LatencyHistogram:
    """Latencies in log buckets, 16 per octave (quantiles within 6.5%)."""

    __slots__ = ("buckets", "count", "total_us")

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.total_us = 0

    def add(self, latency_us: int) -> None:
        self.add_all((latency_us,))

    def add_all(self, latencies_us: Iterable[int]) -> None:
        buckets = self.buckets
        for latency_us in latencies_us:
            value = latency_us + 16  # bucket = octave * 16 + the next 4 bits of the mantissa
            bits = value.bit_length()
            bucket = (bits << 4) | ((value >> (bits - 5)) & 15)
            buckets[bucket] = buckets.get(bucket, 0) + 1
            self.count += 1
            self.total_us += latency_us

    def merge(self, other: LatencyHistogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total_us += other.total_us

    @property
    def mean_s(self) -> float | None:
        return self.total_us / self.count / 1e6 if self.count else None

    def quantile_s(self, q: float) -> float | None:
        """The q-quantile, as the middle of its bucket, in seconds."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= rank:
                bits, mantissa = bucket >> 4, bucket & 15
                low = (16 + mantissa) << (bits - 5)
                return max(0.0, (low + (1 << (bits - 5)) / 2 - 16) / 1e6)
        return None


@dataclass
class _Interval:
    joint: Counter[Key] = field(default_factory=Counter)
    marginals: list[Counter[str]] | None = None  # set when closed


@dataclass
class Series:
    """The counts of one run: ``total[i]`` requests in interval ``start + i``."""

    interval_s: int
    start_s: int
    total: np.ndarray
    joint: list[Counter[Key]]
    marginals: list[list[Counter[str]]]  # [interval][dimension] value -> count
    overflow: int
    folded: Counter[str]  # dimension -> requests counted under OTHER

    def slice(self, where: dict[str, str]) -> np.ndarray:
        """Requests per interval matching every ``dimension: value`` of ``where``."""
        import numpy as np

        if not where:
            return self.total.copy()
        if len(where) == 1:
            (name, value), = where.items()
            d = DIMENSIONS.index(name)
            return np.array([m[d].get(value, 0) for m in self.marginals], dtype=float)
        picks = [(DIMENSIONS.index(k), v) for k, v in where.items()]
        return np.array([sum(n for key, n in joint.items()
                             if all(key[d] == v for d, v in picks)) for joint in self.joint],
                        dtype=float)

    def top(self, dimension: str, count: int = 10) -> list[tuple[str, int]]:
        """The ``count`` values of one dimension with the most requests over the run."""
        d = DIMENSIONS.index(dimension)
        totals: Counter[str] = Counter()
        for interval in self.marginals:
            totals.update(interval[d])
        return totals.most_common(count)


class SeriesBuilder:
    """Feeds :class:`RequestFacts` into per-interval counts; :meth:`series` reads them."""

    def __init__(self, interval_s: int = 60, top_k: int = 25, max_open_keys: int = 50_000,
                 max_closed_keys: int = 5_000,
                 on_close: Callable[[int, Counter[Key]], None] | None = None,
                 on_late: Callable[[Counter[Key]], None] | None = None) -> None:
        """``on_close(index, joint)`` is told each interval's joint counts once it is
        closed; ``on_late(joint)`` each record counted in a closed interval after that (with
        its own values; the series counts it under :data:`OTHER`)."""
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.interval_us = interval_s * 1_000_000
        self.interval_s = interval_s
        self.top_k = top_k
        self.max_open_keys = max_open_keys
        self.max_closed_keys = max_closed_keys
        self._intervals: dict[int, _Interval] = {}
        self._open: set[int] = set()
        self._newest = -1
        self.overflow = 0
        self.on_close = on_close
        self.on_late = on_late

    def add(self, facts: RequestFacts, n: int = 1) -> None:
        """Count ``n`` requests like ``facts`` (in its interval)."""
        index = facts.time_us // self.interval_us
        interval = self._intervals.get(index)
        if interval is None:
            interval = self._intervals[index] = _Interval()
            self._open.add(index)
        if index > self._newest:
            self.advance(index)
        key = dimensions_of(facts)
        joint = interval.joint
        if interval.marginals is not None or (
                key not in joint and len(joint) >= self.max_open_keys):
            if interval.marginals is not None and self.on_late is not None:
                self.on_late(Counter({key: n}))  # its own values: the listener guards them
            self.overflow += n  # a late record for a closed interval, or too many keys
            key = _widen(key)
            if interval.marginals is not None:
                for d, value in enumerate(key):
                    interval.marginals[d][value] += n
        joint[key] += n

    def advance(self, index: int) -> None:
        """The newest interval is ``index`` (or a later one already): close those before
        the open ones."""
        if index <= self._newest:
            return
        self._newest = index
        for old in sorted(i for i in self._open if i <= index - _OPEN):
            self._open.discard(old)
            self._close(old)

    def _close(self, index: int) -> None:
        interval = self._intervals[index]
        sums: list[dict[str, int]] = [{} for _ in DIMENSIONS]
        for key, n in interval.joint.items():
            for counts, value in zip(sums, key, strict=True):
                counts[value] = counts.get(value, 0) + n
        per_dim = [Counter(counts) for counts in sums]
        keep = [None if len(counts) - (OTHER in counts) <= self.top_k else  # all kept
                {v for v, _ in Counter({v: n for v, n in counts.items() if v != OTHER})
                 .most_common(self.top_k)} | {OTHER} for counts in per_dim]
        marginals: list[Counter[str]] = []
        for kept_values, counts in zip(keep, per_dim, strict=True):
            if kept_values is None:
                marginals.append(counts)
                continue
            kept: Counter[str] = Counter()
            for value, n in counts.items():
                if value in kept_values:
                    kept[value] += n
                else:
                    kept[OTHER] += n
            marginals.append(kept)
        joint = interval.joint
        if any(kept_values is not None for kept_values in keep):
            joint = Counter()
            for key, n in interval.joint.items():
                joint[tuple(v if k is None or v in k else OTHER
                            for k, v in zip(keep, key, strict=True))] += n
        if len(joint) > self.max_closed_keys:
            ranked = joint.most_common()
            joint = Counter(dict(ranked[:self.max_closed_keys]))
            for key, n in ranked[self.max_closed_keys:]:
                joint[_widen(key)] += n
        interval.joint = joint
        interval.marginals = marginals
        if self.on_close is not None:
            self.on_close(index, joint)

    def close_all(self) -> None:
        """Close every interval (the end of the input)."""
        for index in sorted(self._open):
            self._close(index)
        self._open.clear()

    def series(self) -> Series:
        """Close every interval and return the counts, one entry per interval from the
        first to the last (empty intervals included); :class:`SpanTooLong` past
        :data:`~lunettes.apiserver.MAX_INTERVALS` of them."""
        import numpy as np

        self.close_all()
        if not self._intervals:
            return Series(self.interval_s, 0, np.zeros(0), [], [], self.overflow, Counter())
        first, last = min(self._intervals), max(self._intervals)
        if last - first >= MAX_INTERVALS:
            raise SpanTooLong(
                f"the requests span {last - first + 1} intervals of {self.interval_s} s, more "
                f"than {MAX_INTERVALS}: give a longer interval, or logs of a shorter time")
        empty = _Interval(marginals=[Counter() for _ in DIMENSIONS])
        items = [self._intervals.get(i, empty) for i in range(first, last + 1)]
        folded: Counter[str] = Counter()
        for item in self._intervals.values():
            for name, values in zip(DIMENSIONS, item.marginals or [], strict=True):
                folded[name] += values.get(OTHER, 0)
        return Series(
            self.interval_s, first * self.interval_s,
            np.array([sum(item.joint.values()) for item in items], dtype=float),
            [item.joint for item in items], [item.marginals or [] for item in items],
            self.overflow, folded)
