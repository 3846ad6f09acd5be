"""Interval arithmetic: tricky cases by hand, then properties against a brute-force oracle
that paints every microsecond of a small timeline."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from lunettes.analyzers.intervals import (
    clip,
    close,
    intersect,
    normalize,
    subtract,
    total,
    union,
)


def test_normalize_merges_overlaps_nesting_and_touching() -> None:
    assert normalize([(5, 9), (1, 3), (2, 4)]) == [(1, 4), (5, 9)]
    assert normalize([(1, 10), (2, 3), (4, 5)]) == [(1, 10)]       # nested
    assert normalize([(1, 2), (2, 3)]) == [(1, 3)]                  # touching
    assert normalize([(3, 3), (5, 4)]) == []                       # empty and reversed
    assert normalize([]) == []


def test_subtract_cases() -> None:
    assert subtract([(0, 10)], [(2, 4), (6, 8)]) == [(0, 2), (4, 6), (8, 10)]
    assert subtract([(2, 4)], [(0, 10)]) == []                    # user inside platform
    assert subtract([(0, 10)], [(10, 12)]) == [(0, 10)]           # touching: nothing cut
    assert subtract([(0, 10)], [(-5, 0), (10, 20)]) == [(0, 10)]
    assert subtract([(0, 4), (6, 10)], [(3, 7)]) == [(0, 3), (7, 10)]
    assert subtract([], [(0, 1)]) == [] and subtract([(0, 1)], []) == [(0, 1)]


def test_intersect_clip_total_and_open_ends() -> None:
    assert intersect([(0, 5), (7, 9)], [(4, 8)]) == [(4, 5), (7, 8)]
    assert intersect([(0, 5)], [(5, 9)]) == []
    assert clip([(-10, 3), (8, 40)], 0, 10) == [(0, 3), (8, 10)]
    assert total([(0, 5), (3, 8), (10, 11)]) == 9                 # overlap counted once
    assert union([(0, 1)], [(1, 2)], [(5, 6)]) == [(0, 2), (5, 6)]
    assert close(3, None, 20) == (3, 20) and close(3, 7, 20) == (3, 7)


N = 60
pairs = st.lists(st.tuples(st.integers(-5, N), st.integers(-5, N)), max_size=8)


def cells(intervals: list[tuple[int, int]]) -> set[int]:
    """The oracle: every unit of time an interval covers, painted one by one."""
    return {t for s, e in intervals for t in range(s, e)}


def is_normal(intervals: list[tuple[int, int]]) -> bool:
    return all(s < e for s, e in intervals) and all(
        a[1] < b[0] for a, b in pairwise(intervals))


@given(pairs, pairs)
def test_against_the_painted_timeline(a: list[tuple[int, int]],
                                      b: list[tuple[int, int]]) -> None:
    for got, expected in (
        (union(a, b), cells(a) | cells(b)),
        (intersect(a, b), cells(a) & cells(b)),
        (subtract(a, b), cells(a) - cells(b)),
        (clip(a, 10, 30), cells(a) & set(range(10, 30))),
    ):
        assert is_normal(got)
        assert cells(got) == expected
        assert total(got) == len(expected)
    assert total(a) == len(cells(a))


@given(pairs, pairs, pairs)
def test_user_time_rule(user: list[tuple[int, int]], platform: list[tuple[int, int]],
                        faults: list[tuple[int, int]]) -> None:
    """The SLO's user time: (user - platform) + faults, clipped to the span."""
    got = clip(union(subtract(user, platform), faults), 0, N // 2)
    expected = ((cells(user) - cells(platform)) | cells(faults)) & set(range(N // 2))
    assert cells(got) == expected and total(got) == len(expected)
