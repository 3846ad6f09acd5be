"""Dedupe and the reorder window."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from lunettes.model.audit import AuditRecord
from lunettes.processors.dedupe import Deduplicator
from lunettes.processors.reorder import ReorderWindow

S = 1_000_000


def rec(t_s: float, audit_id: str = "", stage: str = "ResponseComplete") -> AuditRecord:
    return AuditRecord(audit_id or f"id-{t_s}", stage, "get", round(t_s * S))


def test_only_final_stages_count_once() -> None:
    stats: Counter[str] = Counter()
    dedupe = Deduplicator(stats)
    records = [rec(1, "a", "RequestReceived"), rec(1, "a"), rec(1, "a"), rec(2, "b", "Panic"),
               rec(3, "c", "ResponseStarted"), rec(3, "c")]
    assert [r.audit_id for r in records if dedupe.accept(r)] == ["a", "b", "c"]
    assert stats == Counter({"interim_stage": 2, "duplicate": 1})


def test_dedupe_forgets_old_ids() -> None:
    stats: Counter[str] = Counter()
    dedupe = Deduplicator(stats, horizon_us=10 * S)
    assert dedupe.accept(rec(0, "a"))
    assert dedupe.accept(rec(100, "b"))
    assert len(dedupe._seen) == 1  # "a" is beyond the horizon
    assert not dedupe.accept(rec(100.5, "b"))


@given(st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=200),
       st.integers(min_value=0, max_value=2**32))
def test_window_restores_order_within_skew(times: list[int], seed: int) -> None:
    """Records displaced by at most the window come out in time order, none lost."""
    ordered = sorted(times)
    shuffled = [(t + random.Random(seed + i).uniform(-5, 5), t) for i, t in enumerate(ordered)]
    shuffled.sort()  # arrival order: true time plus up to 5 s of writer skew
    stats: Counter[str] = Counter()
    window = ReorderWindow(stats, window_us=10 * S)
    out: list[int] = []
    for i, (_, t) in enumerate(shuffled):
        out += [r.received_us for r in window.push(rec(t, f"r{i}"))]
    out += [r.received_us for r in window.flush()]
    assert out == [t * S for t in ordered]
    assert stats["late"] == 0


def test_records_later_than_the_window_are_counted() -> None:
    stats: Counter[str] = Counter()
    window = ReorderWindow(stats, window_us=10 * S)
    released = list(window.push(rec(0))) + list(window.push(rec(30)))
    assert [r.received_us for r in released] == [0]
    # 5 s is behind the clock (30 s) by more than the window: released at once, not late
    assert [r.received_us for r in window.push(rec(5))] == [5 * S]
    assert stats["late"] == 0
    # 1 s is older than the 5 s record already released: late, still passed on
    assert [r.received_us for r in window.push(rec(1))] == [1 * S]
    assert stats["late"] == 1
    assert len(window) == 1  # only the 30 s record is held
