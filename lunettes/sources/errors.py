"""Bad input never stops a run: each problem is counted by reason, with where it was."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lunettes.model.audit import AuditRecord
    from lunettes.sources.deadletter import DeadLetter


class BadRecord(ValueError):
    """A record lunettes cannot use; ``reason`` is a short stable key for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass
class BadRecords:
    """Counts of bad records by reason, with the first few places each was seen; with a
    ``dead_letter``, every one of them is also written there (see
    :mod:`lunettes.sources.deadletter`)."""

    samples_per_reason: int = 5
    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)
    dead_letter: DeadLetter | None = None

    def add(self, reason: str, origin: str, detail: str = "", line: Any = None,
            record: AuditRecord | None = None) -> None:
        """Count one bad record seen at ``origin`` (``file:line``); for the dead letter,
        ``line`` is its text as read (bytes) or the document it was (decoded JSON), and
        ``record`` the record when it was refused after decoding."""
        self.counts[reason] += 1
        places = self.samples.setdefault(reason, [])
        if len(places) < self.samples_per_reason:
            places.append(f"{origin}: {detail}" if detail else origin)
        if self.dead_letter is not None:
            self.dead_letter.write(reason, origin, detail, line, record)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> str:
        """A human-readable summary, one reason per block, most frequent first."""
        if not self.counts:
            return "no bad records"
        lines = [f"{self.total} bad record(s):"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {reason}: {n}")
            lines.extend(f"    at {place}" for place in self.samples[reason])
        return "\n".join(lines)
