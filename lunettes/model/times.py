"""Audit timestamps as integer microseconds since the Unix epoch, parsed once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_SECONDS_CACHE: dict[str, int] = {}
_STAMP_CACHE: dict[int, str] = {}
_CACHE_LIMIT = 4096


def parse_time(text: str) -> int:
    """Parse an RFC 3339 timestamp into microseconds since the epoch.

    Fast path for the ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` shape kube-apiserver writes: the
    whole-seconds prefix is cached, so a log of nearby times parses at dict-lookup speed.
    Raises ValueError for anything that is not a timestamp.
    """
    if len(text) >= 20 and text[-1] == "Z" and text[10] == "T":
        prefix = text[:19]
        seconds = _SECONDS_CACHE.get(prefix)
        if seconds is None:
            seconds = int(datetime.fromisoformat(prefix + "+00:00").timestamp())
            if len(_SECONDS_CACHE) >= _CACHE_LIMIT:
                _SECONDS_CACHE.clear()
            _SECONDS_CACHE[prefix] = seconds
        frac = text[19:-1]
        if not frac:
            return seconds * 1_000_000
        if frac[0] != "." or not frac[1:].isdigit():
            raise ValueError(f"invalid timestamp {text!r}")
        return seconds * 1_000_000 + int((frac[1:] + "000000")[:6])
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MICRO



def format_time(micros: int) -> str:
    """Format microseconds since the epoch as RFC 3339 UTC with six fractional digits."""
    seconds, frac = divmod(micros, 1_000_000)
    stamp = _STAMP_CACHE.get(seconds)
    if stamp is None:  # records of one log name nearby seconds: format each once
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        if len(_STAMP_CACHE) >= _CACHE_LIMIT:
            _STAMP_CACHE.clear()
        _STAMP_CACHE[seconds] = stamp
    return f"{stamp}.{frac:06d}Z"


def format_optional(micros: int | None) -> str | None:
    """Like :func:`format_time`, passing None through."""
    return None if micros is None else format_time(micros)
