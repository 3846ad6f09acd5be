"""Lines nested deeper than the decoder allows: kept with their deep values as null,
checked against a plain recursive truncation of the decoded value."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lunettes.sources.jsonline import KEPT_DEPTH, loads, shallow

_TEXT = st.text(alphabet='ab[]{}"\\,:\u00e9 \n', max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=30)


def _truncated(value: Any, depth: int, level: int = 0) -> Any:
    """The reference: containers opening deeper than ``depth`` become None."""
    if isinstance(value, list | dict):
        if level + 1 > depth:
            return None
        if isinstance(value, list):
            return [_truncated(v, depth, level + 1) for v in value]
        return {k: _truncated(v, depth, level + 1) for k, v in value.items()}
    return value


@given(_JSON, st.integers(0, 6))
def test_shallow_reads_as_the_value_truncated_at_its_depth(value: Any, depth: int) -> None:
    raw = orjson.dumps(value)
    assert orjson.loads(shallow(raw, depth)) == _truncated(value, depth)
    assert shallow(raw, 50) is raw  # nothing that deep: the very bytes


def test_a_record_nested_past_the_decoders_limit_keeps_its_fields() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    line = b'{"kind":"Event","deep":' + deep + b',"stage":"ResponseComplete"}'
    doc = loads(line)
    assert doc["kind"] == "Event" and doc["stage"] == "ResponseComplete"
    level, value = 0, doc["deep"]
    while isinstance(value, list) and value:
        level, value = level + 1, value[0]
    assert level >= KEPT_DEPTH - 2  # (all of it where orjson has no limit)
    assert loads(deep.decode())  # text too


def test_what_lies_deeper_than_the_kept_depth_is_not_checked() -> None:
    line = b'{"a":' + b"[" * 5000 + b"not json" + b"]" * 5000 + b',"b":1}'
    kept = KEPT_DEPTH - 1  # (the object is one level)
    assert shallow(line) == b'{"a":' + b"[" * kept + b"null" + b"]" * kept + b',"b":1}'


@pytest.mark.parametrize("line", [
    b'{"kind":"Event","deep":' + b"[" * 5000 + b"]" * 4999 + b"}",  # one bracket short
    b"[" * 5000 + b"]" * 5000 + b",",
    b"not json",
    '{"a":"\ud800"}',  # text (an export's wrapped Event) with a lone surrogate
    '{"a":"\ud800","deep":' + "[" * 5000 + "]" * 5000 + "}",
])
def test_what_is_not_json_is_refused_either_way(line: bytes | str) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        loads(line)
