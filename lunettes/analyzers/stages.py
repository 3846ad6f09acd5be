"""StagesAnalyzer: a Pod's timeline -> the stages of its delivery trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunettes.analyzers.stagedefs import StageDef, StageSet
from lunettes.config.errors import Section
from lunettes.model.hyperevent import HyperEvent
from lunettes.model.record import SpanEvent, Stage
from lunettes.model.timeline import PodTimeline
from lunettes.registry import BuildContext


class StagesAnalyzer:
    """Finds each stage's start and end markers in a timeline (see configs/stages.yaml).

    Output: a list of :class:`Stage`, the root first. Warning Events become span events
    of the innermost stage they fall in.
    """

    def __init__(self, stage_set: StageSet, name: str = "stages") -> None:
        self.name = name
        self.stage_set = stage_set

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> StagesAnalyzer:
        path = context.config_dir / section.get("config", "stages.yaml", str)
        section.check_unknown()
        return cls(StageSet.load(path), name)

    def analyze(self, timeline: PodTimeline, inputs: Mapping[str, Any]) -> list[Stage]:
        events = timeline.ordered()
        if not events:
            return []
        # Partial timelines (creation not in the log): the root starts at first sight.
        stages = self._spans(self.stage_set.root, events, timeline, fallback_start=0)
        for definition in self.stage_set.stages[1:]:
            stages.extend(self._spans(definition, events, timeline))
        root = stages[0]
        for stage in stages[1:]:
            stage.parent = root.name
        _attach_warnings(stages, events)
        return stages

    def _spans(self, stage: StageDef, events: list[HyperEvent], timeline: PodTimeline,
               fallback_start: int | None = None) -> list[Stage]:
        """One Stage per instance whose start marker matched.

        With ``pick: last`` the start is the latest of each hit's first match (for
        readiness: the moment the last container was first known started) before the end.
        """
        spec = timeline.spec
        starts: dict[str, list[int]] = {}
        firsts: dict[str, dict[str, int]] = {}  # instance -> container (or image) -> index
        ends: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            for hit in stage.start.match(event, spec):
                instance = stage.instance(hit)
                if _note(starts, instance, index, stage.per):
                    firsts.setdefault(instance, {}).setdefault(hit[0] or hit[1], index)
            for hit in stage.end.match(event, spec):
                _note(ends, stage.instance(hit), index, stage.per)
        if not starts and fallback_start is not None:
            starts[""] = [fallback_start]
        out = []
        for instance, start_indices in starts.items():
            end_indices = ends.get(instance, [])
            start = start_indices[0]
            end = next((i for i in end_indices if i >= start), None)
            if stage.start.pick == "last":
                start = max(i for i in firsts[instance].values() if end is None or i <= end)
            if end is not None and stage.end.pick == "last":
                end = end_indices[-1]
            out.append(Stage(
                name=stage.name, owner=stage.owner, start_us=events[start].time_us,
                end_us=None if end is None else events[end].time_us, instance=instance,
                instance_kind=stage.per,
            ))
        return out


def _note(found: dict[str, list[int]], instance: str, index: int, per: str) -> bool:
    """Record a match of ``instance`` at ``index``; False for per-stages' Pod-level hits."""
    if per and not instance:
        return False
    indices = found.setdefault(instance, [])
    if not indices or indices[-1] != index:
        indices.append(index)
    return True


def _attach_warnings(stages: list[Stage], events: list[HyperEvent]) -> None:
    root = stages[0]
    for event in events:
        if event.op != "event" or event.event_type != "Warning":
            continue
        holder = root
        for stage in stages[1:]:
            ends = stage.end_us if stage.end_us is not None else event.time_us
            if stage.start_us <= event.time_us <= ends and (
                not stage.instance or stage.instance in (event.container, event.image)
            ) and stage.start_us >= holder.start_us:
                holder = stage
        attributes = {"count": str(event.count)}
        if event.container:
            attributes["k8s.container.name"] = event.container
        holder.events.append(SpanEvent(event.time_us, event.reason or "Warning",
                                       event.message, attributes))
