"""Ground truth: each Pod's facts as a reader can see them, its stages and outcome.

The stage rules mirror ``configs/stages.yaml``: a stage starts at the first matching fact
(``pick: last``: the latest of each container's first match at or before the end), ends at
the first end match at or after the start, and repeats per container or image instance.
Container-state markers match transitions only (a new state or a restart). Facts are what
the simulator wrote, reduced to what the chosen audit policy leaves readable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lunettes.simulate.clock import MINUTE, rfc3339

__all__ = ["POD_TIMEOUT_US", "STAGES", "Fact", "PodTruth", "compute_stages"]

POD_TIMEOUT_US = 35 * MINUTE
_ENGAGE = ("Pulling", "Pulled", "Created", "Started")


@dataclass(slots=True)
class Fact:
    """One readable fact about a Pod at the requestReceivedTimestamp ``t``.

    ``conds`` are changed conditions ``(type, status)``; ``containers`` changed containers
    ``(name, init, state, transition)`` (transition: a new state or restart, not only a
    readiness flip); body fields stay empty when the policy hid the body.
    """

    t: int
    op: str
    source: str
    conds: tuple[tuple[str, str], ...] = ()
    containers: tuple[tuple[str, bool, str, bool], ...] = ()
    phase: str = ""
    reason: str = ""
    container: str = ""
    init: bool = False
    image: str = ""


Hit = tuple[str, str]
"""What a marker matched: ``(container, image)``, both empty for Pod-level facts."""
Match = Callable[[Fact, bool], list[Hit]]
"""A marker: the hits of a fact, given whether the Pod runs to completion."""
_POD: list[Hit] = [("", "")]


def _op(op: str) -> Match:
    return lambda f, c: _POD if f.op == op else []


def _source(src: str) -> Match:
    return lambda f, c: _POD if f.source == src else []


def _cond(ctype: str, status: str, completes: bool | None = None) -> Match:
    def match(f: Fact, c: bool) -> list[Hit]:
        if completes is not None and c != completes:
            return []
        return _POD if (ctype, status) in f.conds else []
    return match


def _phase(*phases: str) -> Match:
    return lambda f, c: _POD if f.phase in phases else []


def _reason(reasons: tuple[str, ...], init: bool | None = None) -> Match:
    def match(f: Fact, c: bool) -> list[Hit]:
        if f.op != "event" or f.reason not in reasons:
            return []
        if init is not None and (not f.container or f.init != init):
            return []
        return [(f.container, f.image)]
    return match


def _state(states: tuple[str, ...], init: bool | None = None) -> Match:
    """Container state transitions (a new state or a restart; a readiness flip is not)."""
    def match(f: Fact, c: bool) -> list[Hit]:
        return [(name, "") for name, is_init, st, transition in f.containers
                if transition and st in states and (init is None or is_init == init)]
    return match


def _any(*alts: Match) -> Match:
    def match(f: Fact, c: bool) -> list[Hit]:
        out: list[Hit] = []
        for alt in alts:
            out.extend(alt(f, c))
        return out
    return match


@dataclass(frozen=True, slots=True)
class StageRule:
    name: str
    start: Match
    end: Match
    per: str = ""
    pick_last: bool = False


STAGES: tuple[StageRule, ...] = (
    StageRule("delivery", _op("create"),
              _any(_cond("Ready", "True", completes=False), _phase("Succeeded", "Failed"))),
    StageRule("scheduling", _op("create"), _op("bind")),
    StageRule("kubelet_pickup", _op("bind"), _source("kubelet")),
    StageRule("sandbox", _source("kubelet"),
              _any(_cond("PodReadyToStartContainers", "True"), _reason(_ENGAGE),
                   _state(("running", "terminated")))),
    StageRule("image_pull", _reason(("Pulling",)), _reason(("Pulled",)), per="image"),
    StageRule("init_containers",
              _any(_reason(_ENGAGE, init=True), _state(("running", "terminated"), init=True)),
              _cond("Initialized", "True")),
    StageRule("container_create", _reason(("Pulled",), init=False),
              _reason(("Created",), init=False), per="container"),
    StageRule("container_start", _reason(("Created",), init=False),
              _any(_reason(("Started",), init=False),
                   _state(("running", "terminated"), init=False)), per="container"),
    StageRule("readiness",
              _any(_reason(("Started",), init=False), _state(("running",), init=False)),
              _cond("ContainersReady", "True"), pick_last=True),
    StageRule("readiness_gates", _cond("ContainersReady", "True"), _cond("Ready", "True")),
)


def _instance(rule: StageRule, hit: Hit) -> str:
    if rule.per == "container":
        return hit[0]
    if rule.per == "image":
        return hit[1]
    return ""


def _note(found: dict[str, list[int]], instance: str, rule: StageRule, i: int) -> bool:
    if rule.per and not instance:
        return False
    indices = found.setdefault(instance, [])
    if not indices or indices[-1] != i:
        indices.append(i)
    return True


def compute_stages(facts: list[Fact], completes: bool) -> list[dict[str, Any]]:
    """The stages a reader of ``facts`` recovers, in STAGES order, with RFC 3339 times.

    With ``pick_last`` the start is the latest of each container's (or image's) first
    start match at or before the end: for readiness, when the last container was first
    known started.
    """
    facts = sorted(facts, key=lambda f: f.t)
    out: list[dict[str, Any]] = []
    for rule in STAGES:
        starts: dict[str, list[int]] = {}
        firsts: dict[str, dict[str, int]] = {}
        ends: dict[str, list[int]] = {}
        for i, f in enumerate(facts):
            for hit in rule.start(f, completes):
                inst = _instance(rule, hit)
                if _note(starts, inst, rule, i):
                    firsts.setdefault(inst, {}).setdefault(hit[0] or hit[1], i)
            for hit in rule.end(f, completes):
                _note(ends, _instance(rule, hit), rule, i)
        for inst, idx in starts.items():
            first = idx[0]
            end = next((j for j in ends.get(inst, ()) if j >= first), None)
            start = first
            if rule.pick_last:
                start = max(i for i in firsts[inst].values() if end is None or i <= end)
            out.append({"name": rule.name, "instance": inst, "start": rfc3339(facts[start].t),
                        "end": None if end is None else rfc3339(facts[end].t)})
    if facts and (not out or out[0]["name"] != "delivery"):
        # The create was not readable: the root starts when the Pod was first seen.
        root = STAGES[0]
        end = next((i for i, f in enumerate(facts) if root.end(f, completes)), None)
        out.insert(0, {"name": "delivery", "instance": "", "start": rfc3339(facts[0].t),
                       "end": None if end is None else rfc3339(facts[end].t)})
    return out


@dataclass(slots=True)
class PodTruth:
    """What the simulator knows about one Pod; ``row`` renders the truth line."""

    uid: str
    namespace: str
    name: str
    scenario: str
    workload: str
    reason: str | None
    completes: bool
    created_us: int | None
    node: str | None = None
    rejected: bool = False
    delivered_us: int | None = None
    terminal: str = ""
    deleted_us: int | None = None
    facts: list[Fact] = field(default_factory=list)

    def outcome(self, log_end_us: int) -> str:
        """delivered, completed, failed, deleted, rejected, timeout or in_progress."""
        if self.rejected:
            return "rejected"
        if self.delivered_us is not None and (self.deleted_us is None
                                              or self.delivered_us < self.deleted_us):
            return "delivered"
        if self.terminal == "Succeeded":
            return "completed"
        if self.terminal == "Failed":
            return "failed"
        if self.deleted_us is not None:
            return "deleted"
        start = self.created_us if self.created_us is not None else 0
        return "timeout" if log_end_us - start >= POD_TIMEOUT_US else "in_progress"

    def row(self, policy: str, log_end_us: int) -> dict[str, Any]:
        return {
            "uid": self.uid, "namespace": self.namespace, "name": self.name,
            "scenario": self.scenario, "workload": self.workload, "node": self.node,
            "created": None if self.created_us is None else rfc3339(self.created_us),
            "outcome": self.outcome(log_end_us), "reason": self.reason, "policy": policy,
            "stages": compute_stages(self.facts, self.completes),
        }
