from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lunettes.model.times import format_time, parse_time


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
