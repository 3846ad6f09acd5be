"""LifecycleAnalyzer: who the Pod is and how its delivery ended."""

from __future__ import annotations

from dataclasses import dataclass

from lunettes.analyzers.base import LIFECYCLE, STAGES, Inputs
from lunettes.config.errors import Section
from lunettes.model.record import Stage
from lunettes.model.timeline import PodTimeline
from lunettes.registry import BuildContext

OUTCOMES = ("delivered", "completed", "failed", "deleted", "rejected", "timeout",
            "in_progress", "unknown")


@dataclass(slots=True)
class Lifecycle:
    """Identity and outcome of one Pod (see PodRecord for the outcome vocabulary)."""

    outcome: str
    created_us: int | None
    finished_us: int | None
    last_seen_us: int | None
    node: str


class LifecycleAnalyzer:
    """Reads the root stage's end (from the ``stages`` input) and the timeline's deletes.

    The Pod is ``delivered``/``completed``/``failed`` by the event that ended the root stage
    (phase Succeeded/Failed, else Ready), ``deleted`` when a delete or eviction came first,
    ``rejected`` when the create was denied, otherwise ``timeout`` or ``in_progress`` -- or
    ``unknown`` when the log shows none of the Pod's status and holds no body about it, or
    its pods/status records without bodies (Metadata level), so that delivery could not
    have been seen. ``created_us`` is the create's time, else
    (partial timelines) the creationTimestamp a later body showed.
    """

    provides = (LIFECYCLE,)
    requires = (STAGES,)
    accepts = ()

    def __init__(self, name: str = "lifecycle") -> None:
        self.name = name

    @classmethod
    def from_config(cls, name: str, section: Section,
                    context: BuildContext) -> LifecycleAnalyzer:
        section.check_unknown()
        return cls(name)

    def analyze(self, timeline: PodTimeline, inputs: Inputs) -> Lifecycle:
        events = timeline.ordered()
        stages: list[Stage] = inputs.role(STAGES) or []
        last_seen = events[-1].time_us if events else None
        node = timeline.node or next((e.node for e in events if e.node), "")
        created = timeline.created_us
        if created is None:
            created = timeline.recovered_created_us
        if events and events[0].op == "create" and events[0].code >= 300:
            return Lifecycle("rejected", created, events[0].time_us, last_seen, node)
        root_end = stages[0].end_us if stages else None
        removed = next((e.time_us for e in events if e.op in ("delete", "evict")), None)
        if removed is not None and (root_end is None or removed < root_end):
            return Lifecycle("deleted", created, removed, last_seen, node)
        if root_end is not None:
            phase = next((e.phase for e in events if e.time_us == root_end and e.phase), "")
            outcome = {"Succeeded": "completed", "Failed": "failed"}.get(phase, "delivered")
            return Lifecycle(outcome, created, root_end, last_seen, node)
        if not any(e.conditions or e.containers or e.phase or e.reason for e in events) and (
                timeline.status_hidden or not timeline.bodies):
            outcome = "unknown"
        elif timeline.end_reason == "timeout":
            outcome = "timeout"
        else:
            outcome = "in_progress"
        return Lifecycle(outcome, created, None, last_seen, node)
