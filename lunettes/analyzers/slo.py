"""SLOAnalyzer: the delivery SLO of a Pod, on the platform's time only.

Delivery time runs from the Pod's creation to the end of the root stage (``delivery``:
Ready, or the terminal phase of a Pod that runs to completion). **User time** is the union
of the user-owned stages (``owner: user`` in stages.yaml: init containers, readiness,
readiness gates) minus whatever platform-owned non-root stages cover at the same moments,
plus any user-fault intervals an input of the analyzer supplies (the diagnosis), clipped
to the delivery span. For Pods that run to completion (Jobs), the workload's own run, from
the moment all its containers were started to the terminal phase, is user time too.
**Platform time** is the rest; it is compared with the deadline of the Pod's SLO class
(slo.yaml). Stages still open end where the span ends.

Results (``result``):

- ``met`` / ``violated``: delivered, platform time within / past the deadline.
- ``killed``: deleted before delivery while the platform was still within the deadline;
  also a Pod that reached phase Failed before it was Ready (or, for a Pod that runs to
  completion, before its containers started): evicted, rejected by the kubelet.
- ``in_progress``: not delivered (still in flight when the input ended, or the pod timeout
  passed) while the platform was still within the deadline.
- ``violated`` also for a Pod deleted, failed or never delivered once the platform time had
  already passed the deadline: the platform broke its promise whatever came after.
- ``not_applicable``: no verdict, with ``why``: the create was rejected, the log began
  after the Pod was created (a partial timeline), or the log shows no status of the Pod
  (outcome ``unknown``: Metadata-level audit).

Only audit times are used, never the wall clock: an undelivered Pod is measured up to the
audit time the pipeline followed it until (``PodTimeline.observed_until_us``) or its last
record, so replaying a log gives the same answers as watching it live.

User-fault intervals (optional): every input in ``needs`` that plays the fault_intervals
role (the diagnosis) is asked for ``user_fault_intervals`` (an attribute, or a key of a
mapping): a sequence of ``(start_us, end_us)`` pairs (or mappings with those keys) in audit
microseconds, ``end_us`` None for still open. Those times count as user time even where a
platform stage covers them (a diagnosis that an image pull failed because the image name
is wrong overrides the stage's owner).

The pod startup SLI follows the kubelet's ``kubelet_pod_start_sli_duration_seconds``: from
creation to the moment all app containers were started, leaving out image pulls and init
containers (the stages named in slo.yaml ``pod_start_sli``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lunettes.analyzers import intervals as iv
from lunettes.analyzers.base import FAULT_INTERVALS, LIFECYCLE, SLO, STAGES, Inputs, Reference
from lunettes.analyzers.lifecycle import Lifecycle
from lunettes.analyzers.sloclasses import SLIStages, SLOClass, SLOConfig
from lunettes.config.errors import Section
from lunettes.model.record import Stage
from lunettes.model.schema import BOOLEAN, DATE, FLOAT, KEYWORD, TEXT, Field, dump, readers
from lunettes.model.timeline import PodTimeline
from lunettes.model.times import format_time
from lunettes.registry import BuildContext

__all__ = ["RESULTS", "SLOAnalyzer", "SLOResult", "attribute_user_time", "evaluate",
           "pod_start_sli_us"]

RESULTS = ("met", "violated", "killed", "in_progress", "not_applicable")
_DELIVERED = ("delivered", "completed", "failed")
_S = 1_000_000


@dataclass(slots=True)
class SLOResult:
    """The SLO verdict of one Pod; times in microseconds, ``to_dict`` in seconds."""

    result: str
    why: str = ""
    slo_class: str = ""
    deadline_us: int | None = None
    total_us: int | None = None
    user_us: int | None = None
    platform_us: int | None = None
    delivered: bool = False
    pod_start_sli_us: int | None = None
    user_intervals: list[iv.Interval] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready result written to the pod record under the analyzer's name
        (:data:`SLO_FIELDS`)."""
        return dump(self, _SLO)


def _seconds(us: int | None) -> float | None:
    return None if us is None else round(us / _S, 6)


def _seconds_of(attribute: str) -> Any:
    return lambda result: _seconds(getattr(result, attribute))


SLO_FIELDS = (
    Field("result", KEYWORD, "met, violated, killed, in_progress or not_applicable"),
    Field("why", TEXT, "why that result", default=""),
    Field("class", KEYWORD, "the SLO class (slo.yaml)", nullable=True, default=None,
          get=lambda r: r.slo_class),
    Field("deadline_s", FLOAT, "the class's deadline", nullable=True, default=None,
          get=_seconds_of("deadline_us")),
    Field("total_s", FLOAT, "creation to delivery", nullable=True, default=None,
          get=_seconds_of("total_us")),
    Field("user_s", FLOAT, "the part of it the user caused", nullable=True, default=None,
          get=_seconds_of("user_us")),
    Field("platform_s", FLOAT, "the rest: what the SLO measures", nullable=True,
          default=None, get=_seconds_of("platform_us")),
    Field("delivered", BOOLEAN, "the Pod was delivered", nullable=True, default=None),
    Field("pod_start_sli_s", FLOAT, "Kubernetes' pod startup SLI", nullable=True,
          default=None, get=_seconds_of("pod_start_sli_us")),
    Field("user_intervals", DATE, "the user's time, as [start, end] pairs", many=2,
          nullable=True, default=[],
          get=lambda r: [[format_time(s), format_time(e)] for s, e in r.user_intervals]),
)
"""The SLO result of a pod record."""
_SLO = readers(SLO_FIELDS)


class SLOAnalyzer:
    """Reads the inputs playing the stages and lifecycle roles, and every input playing
    fault_intervals; see the module docstring for the rules. Config: ``config`` (the SLO
    file, default slo.yaml)."""

    provides = (SLO,)
    requires = (STAGES, LIFECYCLE)
    accepts = (FAULT_INTERVALS,)
    headline = "result"
    fields: ClassVar[dict[str, Field]] = {f.name: f for f in SLO_FIELDS}

    def __init__(self, config: SLOConfig, name: str = "slo") -> None:
        self.name = name
        self.config = config

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> SLOAnalyzer:
        path = context.config_dir / section.get("config", "slo.yaml", str)
        section.check_unknown()
        return cls(SLOConfig.load(path), name)

    def references(self) -> list[Reference]:
        """The stages slo.yaml's ``pod_start_sli`` names, checked against the stages
        input's."""
        return [(STAGES, stage, where) for where, stage in self.config.stage_references]

    def analyze(self, timeline: PodTimeline, inputs: Inputs) -> SLOResult:
        stages: list[Stage] = inputs.role(STAGES) or []
        life: Lifecycle | None = inputs.role(LIFECYCLE)
        faults = [i for output in inputs.every(FAULT_INTERVALS)
                  for i in user_fault_intervals(output)]
        slo_class = self.config.select(timeline.namespace, timeline.spec)
        return evaluate(timeline, stages, life, slo_class, faults, self.config.sli)


def user_fault_intervals(output: Any) -> list[tuple[int, int | None]]:
    """The ``user_fault_intervals`` an analyzer output offers (none if it has no such
    field); items are ``(start_us, end_us)`` pairs or ``{start_us, end_us}`` mappings."""
    raw = (output.get("user_fault_intervals") if isinstance(output, Mapping)
           else getattr(output, "user_fault_intervals", None))
    out: list[tuple[int, int | None]] = []
    for item in raw or ():
        if isinstance(item, Mapping):
            start, end = item.get("start_us"), item.get("end_us")
        else:
            start, end = item
        if isinstance(start, int):
            out.append((start, end if isinstance(end, int) else None))
    return out


def evaluate(timeline: PodTimeline, stages: Sequence[Stage], life: Lifecycle | None,
             slo_class: SLOClass, faults: Iterable[tuple[int, int | None]] = (),
             sli: SLIStages | None = None) -> SLOResult:
    """The verdict for one Pod (pure: everything it needs is passed in)."""
    name = slo_class.name
    outcome = life.outcome if life is not None else ""
    if outcome == "rejected":
        return SLOResult("not_applicable", "rejected: the create was denied, no Pod existed",
                         name)
    created = timeline.created_us
    if created is None:
        return SLOResult("not_applicable",
                         "partial: the log began after the Pod was created", name)
    if outcome == "unknown":
        return SLOResult("not_applicable", "unknown: the log holds no status of the Pod "
                         "(Metadata-level audit), so its delivery cannot be seen", name)
    root = stages[0] if stages and not stages[0].parent else None
    if root is None or life is None:
        return SLOResult("not_applicable", "no delivery stage for this Pod", name)
    sli_stages = sli or SLIStages()
    started = _all_started_us(timeline, stages, sli_stages)
    completes = timeline.spec is not None and timeline.spec.runs_to_completion
    ended = outcome in _DELIVERED and life.finished_us is not None
    # Phase Failed delivered nothing when the Pod should have stayed Ready, or when it runs
    # to completion and none of its containers ever started.
    delivered = ended and (outcome != "failed" or (completes and started is not None))
    if ended or (outcome == "deleted" and life.finished_us is not None):
        end = life.finished_us
    else:
        end = max(t for t in (timeline.observed_until_us, life.last_seen_us, root.end_us,
                              created) if t is not None)
    assert end is not None
    end = max(end, created)
    user = iv.union((iv.close(s.start_us, s.end_us, end) for s in stages[1:]
                     if s.owner == "user"),
                    # the workload's own run, for Pods that run to completion
                    [(started, end)] if completes and started is not None else [])
    platform = iv.union(iv.close(s.start_us, s.end_us, end) for s in stages[1:]
                        if s.owner != "user")
    user = iv.clip(iv.union(iv.subtract(user, platform),
                            (iv.close(s, e, end) for s, e in faults)), created, end)
    total_us = end - created
    user_us = iv.total(user)
    platform_us = total_us - user_us
    deadline_us = round(slo_class.deadline_s * _S)
    late = platform_us > deadline_us
    if delivered:
        result, why = ("violated" if late else "met"), ""
    elif outcome == "deleted":
        result, why = (("violated", "deleted after the platform had used up the deadline")
                       if late else ("killed", "deleted before delivery"))
    elif ended:
        result, why = (("violated", "failed after the platform had used up the deadline")
                       if late else ("killed", "reached phase Failed before it was Ready "
                                               "or before its containers started"))
    else:
        waited = ("the pod timeout passed" if timeline.end_reason == "timeout"
                  else "followed until the input ended")
        result, why = (("violated", f"not delivered, platform time past the deadline "
                                    f"({waited})") if late
                       else ("in_progress", f"not delivered yet ({waited})"))
    return SLOResult(result, why, name, deadline_us, total_us, user_us, platform_us,
                     delivered, pod_start_sli_us(timeline, stages, sli_stages), user)


def attribute_user_time(stages: Sequence[Stage], user: Sequence[iv.Interval],
                        open_end_us: int | None) -> None:
    """Give each stage the SLO's user time inside it (``user_intervals``) and the owner of
    most of its time (``effective_owner``), so that the waterfall, the spans and the SLO
    tell one story. Open stages run to ``open_end_us`` (the record's end, as their spans)."""
    for stage in stages:
        end = stage.end_us if stage.end_us is not None else (
            open_end_us if open_end_us is not None else stage.start_us)
        end = max(end, stage.start_us)
        stage.user_intervals = iv.clip(user, stage.start_us, end)
        length = end - stage.start_us
        stage.effective_owner = stage.owner if length <= 0 else (
            "user" if 2 * iv.total(stage.user_intervals) > length else "platform")


def pod_start_sli_us(timeline: PodTimeline, stages: Sequence[Stage],
                     sli: SLIStages) -> int | None:
    """Creation -> all app containers started, minus image pulls and init containers.

    None when the creation or a container's start is unknown.
    """
    created = timeline.created_us
    end = _all_started_us(timeline, stages, sli)
    if created is None or end is None or end < created:
        return None
    excluded = iv.clip((iv.close(s.start_us, s.end_us, end) for s in stages
                        if s.name in sli.exclude), created, end)
    return end - created - iv.total(excluded)


def _all_started_us(timeline: PodTimeline, stages: Sequence[Stage],
                    sli: SLIStages) -> int | None:
    """When the last app container was started (None if one never was)."""
    started = {s.instance: s.end_us for s in stages if s.name == sli.started}
    names = ([c.name for c in timeline.spec.containers] if timeline.spec is not None
             and timeline.spec.containers else list(started))
    ends = [started.get(n) for n in names]
    end: int | None = None
    if ends and all(e is not None for e in ends):
        end = max(e for e in ends if e is not None)
    else:
        end = next((s.start_us for s in stages if s.name == sli.fallback), None)
    return end
