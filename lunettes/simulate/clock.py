"""Cluster time: integer microseconds since the epoch, formatted the way Kubernetes does."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["MINUTE", "SECOND", "go_duration", "parse_start", "rfc3339", "rfc3339_s"]

SECOND = 1_000_000
MINUTE = 60 * SECOND

_PREFIX: dict[int, str] = {}


def _prefix(seconds: int) -> str:
    text = _PREFIX.get(seconds)
    if text is None:
        if len(_PREFIX) > 8192:
            _PREFIX.clear()
        text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _PREFIX[seconds] = text
    return text


def rfc3339(us: int) -> str:
    """``2026-01-01T00:00:00.123456Z``: audit timestamps (MicroTime)."""
    seconds, frac = divmod(us, SECOND)
    return f"{_prefix(seconds)}.{frac:06d}Z"


def rfc3339_s(us: int) -> str:
    """``2026-01-01T00:00:00Z``: metav1.Time in object bodies (second precision)."""
    return _prefix(us // SECOND) + "Z"


def parse_start(text: str) -> int:
    """Parse an RFC 3339 start time into microseconds since the epoch."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * SECOND)


def go_duration(us: int) -> str:
    """Format a duration like Go's ``time.Duration.String`` at millisecond precision."""
    ms = us // 1000
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest_ms = divmod(ms, 60_000)
    seconds = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".")
    if minutes == 0:
        return f"{seconds}s"
    hours, minutes = divmod(minutes, 60)
    head = f"{hours}h{minutes}m" if hours else f"{minutes}m"
    return f"{head}{seconds}s"
