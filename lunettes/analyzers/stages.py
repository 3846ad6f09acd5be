"""StagesAnalyzer: a Pod's timeline -> the stages of its delivery trace."""

from __future__ import annotations

from lunettes.analyzers.base import STAGES, Inputs
from lunettes.analyzers.markers import Instance, Match
from lunettes.analyzers.stagedefs import PER, StageDef, StageSet
from lunettes.config.errors import Section
from lunettes.model.hyperevent import EventKey, HyperEvent
from lunettes.model.record import SpanEvent, Stage
from lunettes.model.semconv import AUDIT_ID
from lunettes.model.timeline import PodTimeline
from lunettes.registry import BuildContext

# Per stage: the (event index, instances) its start marker matched, and its end marker's.
_Hits = tuple[list[tuple[int, list[Instance]]], list[tuple[int, list[Instance]]]]


class StagesAnalyzer:
    """Finds each stage's start and end markers in a timeline (see configs/stages.yaml).

    Output: a list of :class:`Stage`, the root first. Warning Events become span events
    of the innermost stage they fall in.
    """

    provides = (STAGES,)
    requires = ()
    accepts = ()

    def __init__(self, stage_set: StageSet, name: str = "stages") -> None:
        self.name = name
        self.stage_set = stage_set
        self._plans: dict[EventKey, list[tuple[int, int, Match]]] = {}

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> StagesAnalyzer:
        path = context.config_dir / section.get("config", "stages.yaml", str)
        section.check_unknown()
        return cls(StageSet.load(path), name)

    def defines(self) -> tuple[str, ...]:
        """The stage names other analyzers' configs may refer to."""
        return tuple(s.name for s in self.stage_set.stages)

    def analyze(self, timeline: PodTimeline, inputs: Inputs) -> list[Stage]:
        events = timeline.ordered()
        if not events:
            return []
        definitions = self.stage_set.stages
        hits = self._hits(events, timeline)
        # Partial timelines (creation not in the log): the root starts at first sight.
        stages = _spans(definitions[0], *hits[0], events, fallback_start=0)
        for definition, (starts, ends) in zip(definitions[1:], hits[1:], strict=True):
            stages.extend(_spans(definition, starts, ends, events))
        stages = stages[:1] + _of_a_pod(stages[1:], events)
        root = stages[0]
        for stage in stages[1:]:
            stage.parent = root.name
        _attach_warnings(stages, events)
        return stages

    def _hits(self, events: list[HyperEvent], timeline: PodTimeline) -> list[_Hits]:
        """One pass over the events: for each stage, the (index, instances) its start and
        its end marker matched, in event order. Only markers with alternatives that can
        match an event of that key are tried (see :meth:`Marker.candidates`)."""
        spec = timeline.spec
        out: list[_Hits] = [([], []) for _ in self.stage_set.stages]
        plans = self._plans
        for index, event in enumerate(events):
            key = event.key
            plan = plans.get(key)
            if plan is None:
                plan = self._plan(key)
            for stage_index, side, match in plan:
                matched = match(event, spec)
                if matched:
                    out[stage_index][side].append((index, matched))
        return out

    def _plan(self, key: EventKey) -> list[tuple[int, int, Match]]:
        """The (stage index, 0 for start or 1 for end, its marker's matcher) to try for
        events of ``key``."""
        if len(self._plans) >= 4096:
            self._plans.clear()
        plan: list[tuple[int, int, Match]] = [(i, side, marker.matcher(key))
                for i, stage in enumerate(self.stage_set.stages)
                for side, marker in enumerate((stage.start, stage.end))
                if marker.candidates(key)]
        self._plans[key] = plan
        return plan


def _of_a_pod(stages: list[Stage], events: list[HyperEvent]) -> list[Stage]:
    """The non-root stages: none for a refused create (no Pod ever existed). A partial
    timeline keeps the stages it starts at its first sight (the log cannot tell them from
    starts before it: :meth:`PodRecord.measured_stages` leaves them out of histograms)."""
    first = events[0]
    if first.op == "create" and first.code >= 300:
        return []
    return stages


def _spans(stage: StageDef, start_hits: list[tuple[int, list[Instance]]],
           end_hits: list[tuple[int, list[Instance]]], events: list[HyperEvent],
           fallback_start: int | None = None) -> list[Stage]:
    """One Stage per instance whose start marker matched.

    With ``pick: last`` the start is the latest of each hit's first match (for
    readiness: the moment the last container was first known started) before the end.
    """
    firsts: dict[str, dict[str, int]] = {}  # instance -> container (or image) -> index
    per = stage.per
    starts = _noted(start_hits, per, firsts)
    if not starts:
        if fallback_start is None:
            return []
        starts[""] = [fallback_start]
    ends = _noted(end_hits, per)
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
            instance_kind=per,
        ))
    return out


def _noted(hits: list[tuple[int, list[Instance]]], per: str,
           firsts: dict[str, dict[str, int]] | None = None) -> dict[str, list[int]]:
    """The event indices of each instance's matches (once per event), in order; a
    per-stage's Pod-level hits are left out. ``firsts``: also each instance's first index
    by container (or image)."""
    found: dict[str, list[int]] = {}
    slot = PER.index(per) if per else -1  # the part of a hit naming the instance
    for index, matched in hits:
        for hit in matched:
            instance = hit[slot] if slot >= 0 else ""
            if slot >= 0 and not instance:
                continue
            indices = found.get(instance)
            if indices is None:
                found[instance] = [index]
            elif indices[-1] != index:
                indices.append(index)
            if firsts is not None:
                firsts.setdefault(instance, {}).setdefault(hit[0] or hit[1], index)
    return found


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
        if event.audit_id:
            attributes[AUDIT_ID] = event.audit_id
        if event.container:
            attributes["k8s.container.name"] = event.container
        holder.events.append(SpanEvent(event.time_us, event.reason or "Warning",
                                       event.message, attributes))
