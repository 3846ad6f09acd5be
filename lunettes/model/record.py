"""PodRecord: what one Pod's analysis produces, the single shape every sink receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lunettes.model.schema import EVENT_FIELDS, RECORD_FIELDS, STAGE_FIELDS, dump, readers


@dataclass(slots=True)
class SpanEvent:
    """A point in a stage worth showing (a warning Event, a container restart)."""

    time_us: int
    name: str
    message: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view with an RFC 3339 time (:data:`~lunettes.model.schema.EVENT_FIELDS`)."""
        return dump(self, _EVENT)


@dataclass(slots=True)
class Stage:
    """One stage instance of a Pod's delivery: a span of the trace.

    ``end_us`` is None while the stage has not ended (the trace shows it open up to the
    record's end). ``instance`` names the container or image for per-instance stages.
    """

    name: str
    owner: str
    start_us: int
    end_us: int | None
    instance: str = ""
    instance_kind: str = ""
    """``container`` or ``image`` for per-instance stages, else empty."""
    parent: str = ""
    """Name of the parent stage; empty for the root stage."""
    events: list[SpanEvent] = field(default_factory=list)
    user_intervals: list[tuple[int, int]] = field(default_factory=list)
    """The parts of the stage the SLO counts as user time (user-owned stages not covered by
    platform ones, and the causes the diagnosis puts on the user), clipped to the stage."""
    effective_owner: str = ""
    """Who owns most of the stage's time by the SLO's account (``owner`` when unset): a
    platform stage spent waiting on a user fault (an unschedulable spec) is the user's."""

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, None while open."""
        return None if self.end_us is None else (self.end_us - self.start_us) / 1e6

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view with RFC 3339 times (:data:`~lunettes.model.schema.STAGE_FIELDS`);
        ``events`` only when the stage has any."""
        return dump(self, _STAGE)


@dataclass(slots=True)
class PodRecord:
    """Identity, outcome and stages of one Pod, plus later analyzers' results.

    ``outcome`` is one of ``delivered`` (Ready), ``completed`` (Succeeded), ``failed``
    (phase Failed), ``deleted`` (deleted before delivery), ``rejected`` (create denied),
    ``timeout`` (no delivery within the pod timeout), ``in_progress``, or ``unknown`` (the
    log has no status bodies for the Pod: Metadata-level audit).
    ``end_reason`` says why lunettes stopped following the Pod (``delivered``, ``terminal``,
    ``deleted``, ``rejected``, ``timeout``, or ``end_of_input``: the record is what the
    input showed so far, and a later run may know more; see :mod:`lunettes.model.merge`).
    ``results`` holds the JSON-ready output of analyzers beyond lifecycle and stages, by
    analyzer name (``slo``, ``diagnosis``, ...). ``trace_context`` is the W3C
    ``traceparent`` (``;tracestate`` may follow) the Pod or its owner carried in an
    annotation, empty when none: the trace links to that span.
    """

    uid: str
    namespace: str
    name: str
    node: str
    created_us: int | None
    finished_us: int | None
    outcome: str
    partial: bool = False
    uid_derived: bool = False
    owner_kind: str = ""
    owner_name: str = ""
    last_seen_us: int | None = None
    end_reason: str = ""
    stages: list[Stage] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    trace_context: str = ""
    measured_from_us: int | None = None
    """For a partial record: the time of its binding, if the log shows it. From there on the
    log holds every marker of the Pod's later stages; before it, a stage's start may be a
    marker the log missed. Not part of the JSON record."""

    def measured_stages(self) -> list[Stage]:
        """The closed stages whose whole duration the log shows: all of them for a Pod whose
        creation is in the log; for a partial one neither the root (it starts at first
        sight) nor any stage starting before its binding (none without one)."""
        closed = [s for s in self.stages if s.end_us is not None]
        if not self.partial:
            return closed
        since, root = self.measured_from_us, self.stages[0] if self.stages else None
        return [s for s in closed
                if s is not root and since is not None and s.start_us >= since]

    @property
    def duration_s(self) -> float | None:
        """Seconds from creation to delivery end, None if either is unknown."""
        if self.created_us is None or self.finished_us is None:
            return None
        return (self.finished_us - self.created_us) / 1e6

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready pod record written by the CLI, the store and the API: the
        :data:`~lunettes.model.schema.RECORD_FIELDS`, then the analyzers' results."""
        out = dump(self, _RECORD)
        out.update(self.results)
        return out


_EVENT, _STAGE, _RECORD = (readers(EVENT_FIELDS), readers(STAGE_FIELDS),
                           readers(RECORD_FIELDS))
