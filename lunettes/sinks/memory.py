"""InMemorySink: keeps pod records in a dict by UID, for tests and embedding."""

from __future__ import annotations

from collections.abc import Sequence

from lunettes.model.record import PodRecord
from lunettes.sinks.base import SinkClosedError


class InMemorySink:
    """Holds the latest record of each Pod; ``records`` lists them in arrival order."""

    def __init__(self) -> None:
        self.by_uid: dict[str, PodRecord] = {}
        self.closed = False

    @property
    def records(self) -> list[PodRecord]:
        return list(self.by_uid.values())

    def export(self, batch: Sequence[PodRecord]) -> None:
        if self.closed:
            raise SinkClosedError("in-memory sink is shut down")
        for record in batch:
            self.by_uid[record.uid] = record

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return True

    def shutdown(self) -> None:
        self.closed = True
