"""The audit clock cannot be dragged (lunettes.processors.clock.FutureGuard)."""

from __future__ import annotations

from lunettes.model.audit import AuditRecord
from lunettes.processors.clock import FutureGuard

S = 1_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z
Y2099 = 4_070_908_800 * S


def rec(at: int, origin: str) -> AuditRecord:
    return AuditRecord(origin, "ResponseComplete", "get", at, origin=origin)


def run(records: list[AuditRecord]) -> tuple[list[str], list[str]]:
    """(origins passed on, origins quarantined)."""
    quarantined: list[str] = []
    guard = FutureGuard(300 * S, lambda r, clock: quarantined.append(r.origin))
    return [r.origin for r in guard.admit(records)], quarantined


def log(name: str, start: int, count: int, step: int = S) -> list[AuditRecord]:
    return [rec(start + i * step, f"{name}:{i + 1}") for i in range(count)]


def test_a_wild_first_record_does_not_set_the_clock() -> None:
    lines = [rec(Y2099, "a.log:1"), *log("a.log", T0, 20)]
    passed, quarantined = run(lines)
    assert quarantined == ["a.log:1"] and len(passed) == 20


def test_a_wild_record_in_the_middle_is_quarantined_and_the_clock_stays() -> None:
    lines = log("a.log", T0, 20)
    lines[10:10] = [rec(Y2099, "a.log:99")]
    passed, quarantined = run(lines)
    assert quarantined == ["a.log:99"] and passed == [r.origin for r in lines if
                                                      r.origin != "a.log:99"]


def test_a_wild_last_record_is_quarantined() -> None:
    passed, quarantined = run([*log("a.log", T0, 20), rec(Y2099, "a.log:21")])
    assert quarantined == ["a.log:21"] and len(passed) == 20


def test_a_real_gap_in_the_log_moves_the_clock() -> None:
    lines = [*log("a.log", T0, 20), *log("a.log", T0 + 120 * 86400 * S, 20)]
    passed, quarantined = run(lines)
    assert quarantined == [] and passed == [r.origin for r in lines]


def test_a_later_capture_in_another_file_moves_the_clock_however_short() -> None:
    lines = [*log("old.log", T0, 30), *log("new.log", T0 + 200 * 86400 * S, 3)]
    passed, quarantined = run(lines)
    assert quarantined == [] and passed == [r.origin for r in lines]


def test_a_short_later_capture_first_does_not_hide_an_older_one() -> None:
    lines = [*log("new.yaml", T0 + 200 * 86400 * S, 3), *log("old.log", T0, 30)]
    passed, quarantined = run(lines)
    assert quarantined == [] and passed == [r.origin for r in lines]


def test_records_without_a_time_pass_at_once() -> None:
    lines = [rec(0, "a.log:0"), *log("a.log", T0, 3)]
    passed, quarantined = run(lines)
    assert passed[0] == "a.log:0" and len(passed) == 4 and not quarantined
