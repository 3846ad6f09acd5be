"""JSON of one audit line or body, decoded whatever its nesting.

orjson from 3.9 on refuses JSON nested more than 1,024 deep, and msgspec refuses less deep,
while kube-apiserver (whose Go decoder stops at 10,000) accepts and audits deeper objects.
No field lunettes reads is deep, so :func:`loads` decodes such a document with every array
or object that opens deeper than :data:`KEPT_DEPTH` replaced by ``null``: what lies that
deep is neither read nor checked, and the record around it is kept (or refused for what it
is).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

KEPT_DEPTH = 256
"""Nesting kept when a document is too deep for the decoder."""

_TOKENS = re.compile(rb'["\[\]{}]')
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_OPEN = frozenset(b"[{")


def loads(data: bytes | str) -> Any:
    """``orjson.loads``, and for a document nested too deep for it, the document with its
    values deeper than :data:`KEPT_DEPTH` as ``null``. Raises orjson's JSONDecodeError
    for what is not JSON either way."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # (a lone surrogate is kept as bytes for orjson to refuse, not raised here)
        raw = data.encode(errors="surrogatepass") if isinstance(data, str) else data
        kept = shallow(raw)
        if kept is raw:
            raise
    return orjson.loads(kept)


def shallow(raw: bytes, depth: int = KEPT_DEPTH) -> bytes:
    """``raw`` with every array or object that opens deeper than ``depth`` replaced by
    ``null`` (strings are skipped whole, escapes included); ``raw`` itself when nothing is
    that deep. Brackets that do not match are left for the decoder to refuse."""
    parts: list[bytes] = []
    level, kept_to, cut_at, at = 0, 0, -1, 0
    while (token := _TOKENS.search(raw, at)) is not None:
        at = token.end()
        char = raw[token.start()]
        if char == 34:  # a string: past its closing quote
            rest = _STRING_REST.match(raw, at)
            if rest is None:
                break
            at = rest.end()
        elif char in _OPEN:
            level += 1
            if level == depth + 1:
                cut_at = token.start()
        else:
            if level == depth + 1 and cut_at >= 0:
                parts += (raw[kept_to:cut_at], b"null")
                kept_to, cut_at = at, -1
            level -= 1
    if not parts:
        return raw
    parts.append(raw[kept_to:])
    return b"".join(parts)
