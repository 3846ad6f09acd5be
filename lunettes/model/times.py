"""Audit timestamps as integer microseconds since the Unix epoch, parsed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_SECONDS_CACHE: dict[str, int] = {}
_MINUTES: dict[str, int] = {}
_STAMP_CACHE: dict[int, str] = {}
_CACHE_LIMIT = 4096
MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICRO
"""The earliest time lunettes can represent and write back (0001-01-01T00:00:00Z)."""
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICRO
"""The latest (9999-12-31T23:59:59.999999Z): later times have no RFC 3339 form."""


def parse_time(text: str) -> int:
    """Parse an RFC 3339 timestamp into microseconds since the epoch.

    Fast path for the ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` shape kube-apiserver writes: each
    minute is parsed once, then its seconds and microseconds (``05123456``) are one integer
    added to it; other ``...Z`` shapes cache their whole-seconds prefix. Raises ValueError
    for anything that is not a timestamp, and for times outside the years 1 to 9999 once
    the offset is applied (:data:`MIN_US`, :data:`MAX_US`).
    """
    if len(text) == 27 and text[26] == "Z" and text[4:20:3] == "--T::.":
        digits = text[17:19] + text[20:26]
        if text[17] < "6" and digits.isdigit() and digits.isascii():
            minute = _MINUTES.get(text[:16])
            if minute is None:
                if len(_MINUTES) >= _CACHE_LIMIT:
                    _MINUTES.clear()
                minute = _MINUTES[text[:16]] = _parse(text) - int(digits)  # raises: no time
            return minute + int(digits)
    return _parse(text)


def _parse(text: str) -> int:
    """:func:`parse_time` without its per-minute cache."""
    if len(text) >= 20 and text[-1] == "Z" and text[10] == "T":
        prefix = text[:19]
        seconds = _SECONDS_CACHE.get(prefix)
        if seconds is None:
            if not prefix.isascii():
                raise ValueError(f"invalid timestamp {text[:64]!r}")
            moment = datetime.fromisoformat(prefix + "+00:00")
            seconds = (moment - _EPOCH) // timedelta(seconds=1)
            if len(_SECONDS_CACHE) >= _CACHE_LIMIT:
                _SECONDS_CACHE.clear()
            _SECONDS_CACHE[prefix] = seconds
        frac = text[19:-1]
        if not frac:
            return seconds * 1_000_000
        if frac[0] != "." or not frac[1:].isdigit() or not frac.isascii():
            raise ValueError(f"invalid timestamp {text[:64]!r}")
        return seconds * 1_000_000 + int((frac[1:] + "000000")[:6])
    if not text.isascii():
        raise ValueError(f"invalid timestamp {text[:64]!r}")
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        micros = (dt - _EPOCH) // _MICRO
    except OverflowError:
        raise ValueError(f"timestamp out of range {text[:64]!r}") from None
    if not MIN_US <= micros <= MAX_US:
        raise ValueError(f"timestamp out of range {text[:64]!r}")
    return micros



def format_time(micros: int) -> str:
    """Format microseconds since the epoch as RFC 3339 UTC with six fractional digits."""
    seconds, frac = divmod(micros, 1_000_000)
    stamp = _STAMP_CACHE.get(seconds)
    if stamp is None:  # records of one log name nearby seconds: format each once
        stamp = (_EPOCH + timedelta(seconds=seconds)).isoformat()[:19]
        if len(_STAMP_CACHE) >= _CACHE_LIMIT:
            _STAMP_CACHE.clear()
        _STAMP_CACHE[seconds] = stamp
    return f"{stamp}.{frac:06d}Z"


def format_optional(micros: int | None) -> str | None:
    """Like :func:`format_time`, passing None through."""
    return None if micros is None else format_time(micros)
