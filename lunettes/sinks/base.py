"""The sink contract: where finished pod records go."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from lunettes.model.record import PodRecord


class SinkClosedError(RuntimeError):
    """Raised by ``export`` after ``shutdown``."""


@runtime_checkable
class Sink(Protocol):
    """Receives batches of final pod records.

    ``export(batch)`` delivers (or durably queues) the records; ``force_flush(timeout_s)``
    blocks until everything exported so far is delivered and returns whether it was;
    ``shutdown()`` flushes and releases resources, is safe to call twice, and after it
    ``export`` raises :class:`SinkClosedError`. Writing the same record twice (a replay)
    must not create a duplicate: records are keyed by pod UID.
    """

    def export(self, batch: Sequence[PodRecord]) -> None: ...

    def force_flush(self, timeout_s: float = 30.0) -> bool: ...

    def shutdown(self) -> None: ...
