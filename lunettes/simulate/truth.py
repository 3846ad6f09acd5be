"""Ground truth: each Pod's facts as a reader can see them, its stages and outcome.

The stage rules mirror ``configs/stages.yaml``: a stage starts at the first matching fact
(``pick: last`` takes the last match strictly before the end), ends at the first end match
at or after the start, and repeats per container or image instance. Facts are what the
simulator wrote, reduced to what the chosen audit policy leaves readable.
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
    ``(name, init, state)``; body fields stay empty when the policy hid the body.
    """

    t: int
    op: str
    source: str
    conds: tuple[tuple[str, str], ...] = ()
    containers: tuple[tuple[str, bool, str], ...] = ()
    phase: str = ""
    reason: str = ""
    container: str = ""
    init: bool = False
    image: str = ""


Match = Callable[[Fact, bool], list[str]]
"""A marker: the instances a fact matches for ([""] for pod-level), given ``completes``."""


def _op(op: str) -> Match:
    return lambda f, c: [""] if f.op == op else []


def _source(src: str) -> Match:
    return lambda f, c: [""] if f.source == src else []


def _cond(ctype: str, status: str, completes: bool | None = None) -> Match:
    def match(f: Fact, c: bool) -> list[str]:
        if completes is not None and c != completes:
            return []
        return [""] if (ctype, status) in f.conds else []
    return match


def _phase(*phases: str) -> Match:
    return lambda f, c: [""] if f.phase in phases else []


def _reason(reasons: tuple[str, ...], init: bool | None = None, per: str = "") -> Match:
    def match(f: Fact, c: bool) -> list[str]:
        if f.op != "event" or f.reason not in reasons:
            return []
        if init is not None and (not f.container or f.init != init):
            return []
        if per == "image":
            return [f.image]
        if per == "container":
            return [f.container]
        return [f.container or ""]
    return match


def _state(states: tuple[str, ...], init: bool | None = None) -> Match:
    def match(f: Fact, c: bool) -> list[str]:
        return [name for name, is_init, st in f.containers
                if st in states and (init is None or is_init == init)]
    return match


def _any(*alts: Match) -> Match:
    def match(f: Fact, c: bool) -> list[str]:
        out: list[str] = []
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
    StageRule("image_pull", _reason(("Pulling",), per="image"),
              _reason(("Pulled",), per="image"), per="image"),
    StageRule("init_containers",
              _any(_reason(_ENGAGE, init=True), _state(("running", "terminated"), init=True)),
              _cond("Initialized", "True")),
    StageRule("container_create", _reason(("Pulled",), init=False, per="container"),
              _reason(("Created",), init=False, per="container"), per="container"),
    StageRule("container_start", _reason(("Created",), init=False, per="container"),
              _any(_reason(("Started",), init=False, per="container"),
                   _state(("running", "terminated"), init=False)), per="container"),
    StageRule("readiness",
              _any(_reason(("Started",), init=False), _state(("running",), init=False)),
              _cond("ContainersReady", "True"), pick_last=True),
    StageRule("readiness_gates", _cond("ContainersReady", "True"), _cond("Ready", "True")),
)


def _note(found: dict[str, list[int]], rule: StageRule, hits: list[str], i: int) -> None:
    for inst in hits:
        key = inst if rule.per else ""
        if rule.per and not key:
            continue
        indices = found.setdefault(key, [])
        if not indices or indices[-1] != i:
            indices.append(i)


def compute_stages(facts: list[Fact], completes: bool) -> list[dict[str, Any]]:
    """The stages a reader of ``facts`` recovers, in STAGES order, with RFC 3339 times."""
    facts = sorted(facts, key=lambda f: f.t)
    out: list[dict[str, Any]] = []
    for rule in STAGES:
        starts: dict[str, list[int]] = {}
        ends: dict[str, list[int]] = {}
        for i, f in enumerate(facts):
            _note(starts, rule, rule.start(f, completes), i)
            _note(ends, rule, rule.end(f, completes), i)
        for inst, idx in starts.items():
            first = idx[0]
            end = next((j for j in ends.get(inst, ()) if j >= first), None)
            start = first
            if rule.pick_last:
                before = [i for i in idx if end is None or i < end]
                start = before[-1] if before else first
            out.append({"name": rule.name, "instance": inst, "start": rfc3339(facts[start].t),
                        "end": None if end is None else rfc3339(facts[end].t)})
    if facts and (not out or out[0]["name"] != "delivery"):
        # The create was not readable: the root starts when the Pod was first seen.
        out.insert(0, {"name": "delivery", "instance": "", "start": rfc3339(facts[0].t),
                       "end": None})
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
