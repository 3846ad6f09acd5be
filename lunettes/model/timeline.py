"""PodTimeline: a Pod's spec summary plus its HyperEvents, the unit every analyzer reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from lunettes.model.hyperevent import HyperEvent
from lunettes.model.spec import PodSpecSummary


@dataclass(slots=True)
class PodTimeline:
    """Everything known about one Pod incarnation.

    ``uid_derived`` is True when the audit log never showed the real UID (Metadata-level
    logs, rejected creates) and the UID was derived from other identity. ``created_us`` is
    None when the log starts after the Pod was created (``partial`` timelines).
    ``end_reason`` says why the folder stopped following the Pod: ``delivered``,
    ``terminal``, ``deleted``, ``rejected``, ``timeout`` or ``end_of_input``.
    """

    uid: str
    namespace: str
    name: str
    uid_derived: bool = False
    created_us: int | None = None
    spec: PodSpecSummary | None = None
    events: list[HyperEvent] = field(default_factory=list)
    node: str = ""
    end_reason: str = ""
    recovered_created_us: int | None = None
    """For a partial timeline, the Pod's ``metadata.creationTimestamp`` (whole seconds) as
    a later body showed it: when it was created, though the log did not see it."""
    bodies: bool = False
    """True when a record about the Pod carried a request or response body (the policy
    logged it above Metadata level)."""
    status_hidden: bool = False
    """True when a pods/status record about the Pod came without a body (the policy logs
    pods/status at Metadata level): its status cannot be seen."""
    observed_until_us: int | None = None
    """The audit time up to which the pipeline followed the Pod (set when it leaves memory);
    analyzers judging a Pod that was never delivered measure up to here."""
    in_order: bool = False
    """True once :meth:`ordered` sorted the events (the fold does it as the Pod leaves
    memory: every analyzer then reads them as they are). Events are appended before."""

    @property
    def partial(self) -> bool:
        """True when the Pod's creation was not in the log."""
        return self.created_us is None

    def ordered(self) -> list[HyperEvent]:
        """The HyperEvents in time order (ties in arrival order), sorted once."""
        if not self.in_order:
            self.events.sort(key=_order)
            self.in_order = True
        return self.events


def _order(event: HyperEvent) -> tuple[int, int]:
    return event.time_us, event.seq
