"""Interval arithmetic on the audit clock: half-open ``[start, end)`` spans of microseconds.

A *set* of intervals is kept normalised: sorted, non-empty, disjoint and not touching
(``[1, 2)`` and ``[2, 3)`` become ``[1, 3)``). Every function takes any iterable of
``(start, end)`` pairs (empty or reversed pairs are dropped) and returns a normalised list,
so results compose: ``total(subtract(union(a), b))``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Interval", "clip", "close", "intersect", "normalize", "subtract", "total",
           "union"]

Interval = tuple[int, int]


def normalize(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, merged (touching intervals merge too), empty ones dropped."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def union(*groups: Iterable[Interval]) -> list[Interval]:
    """Everything covered by any of the groups."""
    return normalize(i for group in groups for i in group)


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """What both cover."""
    left, right = normalize(a), normalize(b)
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] <= right[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """What ``a`` covers and ``b`` does not."""
    cuts = normalize(b)
    out: list[Interval] = []
    j = 0
    for start, end in normalize(a):
        while j < len(cuts) and cuts[j][1] <= start:
            j += 1
        k = j
        while start < end and k < len(cuts) and cuts[k][0] < end:
            if cuts[k][0] > start:
                out.append((start, cuts[k][0]))
            start = max(start, cuts[k][1])
            k += 1
        if start < end:
            out.append((start, end))
    return out


def clip(a: Iterable[Interval], lo: int, hi: int) -> list[Interval]:
    """The part of ``a`` inside ``[lo, hi)``."""
    return intersect(a, [(lo, hi)])


def total(a: Iterable[Interval]) -> int:
    """The length covered (overlaps counted once)."""
    return sum(end - start for start, end in normalize(a))


def close(start: int, end: int | None, open_end: int) -> Interval:
    """A span that may still be open (``end`` None) as an interval ending at ``open_end``."""
    return (start, open_end if end is None else end)
