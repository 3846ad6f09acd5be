"""Bad input never stops a run: each problem is counted by reason, with where it was."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lunettes.model.times import format_time

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
            record: AuditRecord | None = None, n: int = 1) -> None:
        """Count one bad record (or ``n`` alike, one entry in the dead letter) seen at
        ``origin`` (``file:line``); for the dead letter, ``line`` is its text as read
        (bytes) or the document it was (decoded JSON), and ``record`` the record when it
        was refused after decoding."""
        self.counts[reason] += n
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


@dataclass
class LateRecords:
    """Records that came behind the reorder window (``late``): how many, the places of the
    first ``samples`` (``file:line``), and every one in the ``dead_letter`` if there is one.
    They are not bad: each is still folded into its Pod while the Pod is in flight."""

    samples: int = 10
    count: int = 0
    places: list[str] = field(default_factory=list)
    dead_letter: DeadLetter | None = None

    def add(self, record: AuditRecord, released_us: int) -> None:
        """Count one ``record`` that came after the window had released ``released_us``."""
        self.count += 1
        origin = record.origin or "?"
        if len(self.places) < self.samples or self.dead_letter is not None:
            behind = (released_us - record.received_us) / 1e6
            detail = (f"{format_time(record.received_us)}, {behind:.3f} s behind what the "
                      f"reorder window had released ({format_time(released_us)})")
            if len(self.places) < self.samples:
                self.places.append(origin)
            if self.dead_letter is not None:
                self.dead_letter.write("late", origin, detail,
                                       record=record if record.audit_id else None)

    def report(self) -> str:
        """The count and the first places, for the end of a run ("" when none)."""
        if not self.count:
            return ""
        lines = [f"{self.count} late record(s), behind the reorder window (folded while "
                 f"their Pod was in flight, else counted after_final)"
                 + (f"; the first {len(self.places)}:" if self.count > len(self.places)
                    else ":")]
        lines.extend(f"  at {place}" for place in self.places)
        return "\n".join(lines)

    def view(self) -> dict[str, Any]:
        """As JSON: ``count`` and ``first`` places."""
        return {"count": self.count, "first": list(self.places)}
