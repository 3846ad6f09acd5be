"""Ground truth: what the simulator did to each Pod and when, on its own clock.

The scripts mark, as they write each request, the moments of a Pod's delivery that request
makes known (:class:`Mark`: the scheduler binds, the kubelet starts pulling an image, the
sandbox is ready, a container reports running...); the expected stages are read from those
marks alone (:func:`expected_stages`), never by matching audit records against
``configs/stages.yaml``. Only moments a reader of the log can see are marked: a request the
audit policy dropped, or whose body it hid, marks nothing. The outcome comes from what the
simulator did (delivered, terminal phase, deleted, rejected).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lunettes.simulate.clock import MINUTE, rfc3339

__all__ = ["ORDER", "POD_TIMEOUT_US", "Mark", "PodTruth", "expected_stages"]

POD_TIMEOUT_US = 35 * MINUTE


@dataclass(frozen=True, slots=True)
class Mark:
    """A moment of a Pod's delivery as the simulator lived it: at ``t`` (its clock: the
    requestReceivedTimestamp of the request that made it known) stage ``stage`` started or
    ended (``edge``) for ``instance`` (an image or container for per-instance stages).
    ``key`` tells apart the containers whose last start opens ``readiness``.
    Only moments a reader of the log can see are marked (the policy kept the request's
    body, or for the kubelet's first request, the request at all)."""

    t: int
    stage: str
    edge: str
    instance: str = ""
    key: str = ""


ORDER = ("delivery", "scheduling", "kubelet_pickup", "sandbox", "image_pull",
         "init_containers", "container_create", "container_start", "readiness",
         "readiness_gates")
"""The stages of a truth row, in order."""
LAST_START = ("readiness",)
"""Stages that start when the last of their keys started (the last container started)."""


def expected_stages(marks: list[Mark], first_seen_us: int | None) -> list[dict[str, Any]]:
    """The stages the marks make: each instance from its first start to the first end at
    or after it (None: never ended); for :data:`LAST_START` stages the start is the latest
    of each key's first start at or before the end. When the create was not readable the
    root starts when the Pod was first seen."""
    marks = sorted(marks, key=lambda m: m.t)
    out: list[dict[str, Any]] = []
    for name in ORDER:
        firsts: dict[str, dict[str, int]] = {}
        for m in marks:
            if m.stage == name and m.edge == "start":
                firsts.setdefault(m.instance, {}).setdefault(m.key, m.t)
        for instance, by_key in firsts.items():
            first = min(by_key.values())
            end = next((m.t for m in marks if m.stage == name and m.edge == "end"
                        and m.instance == instance and m.t >= first), None)
            start = first
            if name in LAST_START:
                start = max(t for t in by_key.values() if end is None or t <= end)
            out.append({"name": name, "instance": instance, "start": rfc3339(start),
                        "end": None if end is None else rfc3339(end)})
    if first_seen_us is not None and (not out or out[0]["name"] != "delivery"):
        end = next((m.t for m in marks if m.stage == "delivery" and m.edge == "end"), None)
        out.insert(0, {"name": "delivery", "instance": "", "start": rfc3339(first_seen_us),
                       "end": None if end is None else rfc3339(end)})
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
    marks: list[Mark] = field(default_factory=list)
    first_seen_us: int | None = None

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
            "stages": expected_stages(self.marks, self.first_seen_us),
        }
