from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lunettes.model.times import _parse, format_time, parse_time


@given(st.integers(min_value=0, max_value=4_102_444_800_000_000))
def test_format_then_parse_is_identity(micros: int) -> None:
    assert parse_time(format_time(micros)) == micros


@pytest.mark.parametrize("text, expected", [
    ("2023-01-27T18:28:08.129781Z", datetime(2023, 1, 27, 18, 28, 8, 129781, tzinfo=UTC)),
    ("2024-01-01T01:00:00Z", datetime(2024, 1, 1, 1, 0, 0, tzinfo=UTC)),
    ("2018-10-25T14:09:12.5Z", datetime(2018, 10, 25, 14, 9, 12, 500000, tzinfo=UTC)),
    ("2024-01-01T01:00:00.123456789Z", datetime(2024, 1, 1, 1, 0, 0, 123456, tzinfo=UTC)),
    ("2024-01-01T02:00:00.5+01:00", datetime(2024, 1, 1, 1, 0, 0, 500000, tzinfo=UTC)),
])
def test_parse_time_matches_datetime(text: str, expected: datetime) -> None:
    assert parse_time(text) == int(expected.timestamp()) * 1_000_000 + expected.microsecond


@pytest.mark.parametrize("text", ["yesterday", "2024-01-01T01:00:00.abcZ", ""])
def test_parse_time_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


@settings(max_examples=3000, deadline=None)
@given(st.integers(min_value=0, max_value=253402300799999999), st.integers(0, 26),
       st.sampled_from("0123456789:.Z+-T x\u0663"))
def test_the_per_minute_cache_reads_what_the_uncached_parse_reads(us: int, at: int,
                                                                   char: str) -> None:
    """Every time kube-apiserver writes, and that time with one character changed, reads
    the same through the per-minute cache as without it (or is refused by both), the
    minute cached or not."""
    text = format_time(us)
    assert parse_time(text) == us
    changed = text[:at] + char + text[at + 1:]
    try:
        expected: int | None = _parse(changed)
    except ValueError:
        expected = None
    for _ in range(2):  # the minute cached the second time
        try:
            got: int | None = parse_time(changed)
        except ValueError:
            got = None
        assert got == expected, changed
