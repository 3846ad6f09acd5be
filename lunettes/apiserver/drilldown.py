"""Which combination of attributes explains a change: a search over the combinations of
dimensions in the spirit of Adtributor (explanatory power and surprise per element) and
HotSpot / Squeeze (combinations pruned to the elements that matter).

Input: leaves, each a combination of every dimension's value with its real and expected
measure in the window (requests, or seconds of delay: any additive measure). For a
combination c of at most ``max_depth`` attributes:

- difference ``d(c) = real(c) - expected(c)``; share ``d(c) / d(total)`` (explanatory power);
- purity ``d(c) / real(c)`` (``/ expected(c)`` for a drop): how much of c is the change;
- surprise: the Jensen-Shannon term of c between the expected and the real distribution.

Only values whose own share reaches ``min_share`` combine (the pruning), and combinations
are ranked by ``share * purity``; among those within 5% of the best, the one with the fewest
attributes comes first: the smallest combination that explains most of the change and is
mostly made of it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

Leaf = tuple[str, ...]
_TIE = 0.95


@dataclass(frozen=True)
class Culprit:
    """One combination of attributes and how much of the change it explains."""

    attributes: dict[str, str]
    expected: float
    real: float
    difference: float
    share: float
    purity: float
    surprise: float
    support: float  # the real measure of the combination in the window (requests, seconds)
    score: float


def _surprise(p: float, q: float) -> float:
    """The Jensen-Shannon divergence term of one element (p expected, q real share)."""
    total = 0.0
    m = (p + q) / 2
    for x in (p, q):
        if x > 0:
            total += 0.5 * x * math.log(x / m)
    return total


def explain(leaves: Mapping[Leaf, tuple[float, float]], dimensions: Sequence[str],
            max_depth: int = 3, min_share: float = 0.1, top: int = 5) -> list[Culprit]:
    """The combinations that explain the change from expected to real, best first."""
    real_total = sum(r for r, _ in leaves.values())
    expected_total = sum(e for _, e in leaves.values())
    change = real_total - expected_total
    if not leaves or abs(change) < 1e-9:
        return []
    candidates: list[set[str]] = []
    for d in range(len(dimensions)):
        sums = _aggregate(leaves, (d,), None)
        candidates.append({key[0] for key, (r, e) in sums.items() if (r - e) / change
                           >= min_share})
    found: list[Culprit] = []
    for depth in range(1, max_depth + 1):
        for dims in combinations(range(len(dimensions)), depth):
            if any(not candidates[d] for d in dims):
                continue
            for key, (real, expected) in _aggregate(leaves, dims, candidates).items():
                culprit = _culprit(dims, key, real, expected, dimensions, change,
                                   real_total, expected_total, min_share)
                if culprit is not None:
                    found.append(culprit)
    found.sort(key=lambda c: (-c.score, len(c.attributes), -c.surprise))
    if not found:
        return []
    best = found[0].score
    close = [c for c in found if c.score >= best * _TIE]
    first = min(close, key=lambda c: (len(c.attributes), -c.score))
    return [first, *[c for c in found if c is not first][:top - 1]]


def _aggregate(leaves: Mapping[Leaf, tuple[float, float]], dims: tuple[int, ...],
               candidates: list[set[str]] | None) -> dict[Leaf, tuple[float, float]]:
    sums: dict[Leaf, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for leaf, (real, expected) in leaves.items():
        key = tuple(leaf[d] for d in dims)
        if candidates is not None and any(v not in candidates[d] for v, d in zip(key, dims,
                                                                                strict=True)):
            continue
        entry = sums[key]
        entry[0] += real
        entry[1] += expected
    return {key: (r, e) for key, (r, e) in sums.items()}


def _culprit(dims: Iterable[int], key: Leaf, real: float, expected: float,
             dimensions: Sequence[str], change: float, real_total: float,
             expected_total: float, min_share: float) -> Culprit | None:
    difference = real - expected
    share = difference / change
    if share < min_share:
        return None
    base = real if change > 0 else expected
    purity = max(0.0, min(1.0, difference / base)) if base > 0 else 0.0
    surprise = _surprise(expected / expected_total if expected_total > 0 else 0.0,
                         real / real_total if real_total > 0 else 0.0)
    return Culprit({dimensions[d]: v for d, v in zip(dims, key, strict=True)}, expected, real,
                   difference, share, purity, surprise, real, min(share, 1.0) * purity)
