"""StagesAnalyzer on hand-made timelines: marker semantics, per-instance, open stages."""

from __future__ import annotations

from itertools import count

import pytest

from lunettes.analyzers.base import Inputs
from lunettes.analyzers.lifecycle import LifecycleAnalyzer
from lunettes.analyzers.stagedefs import StageSet
from lunettes.analyzers.stages import StagesAnalyzer
from lunettes.model.hyperevent import ConditionChange, ContainerChange, HyperEvent
from lunettes.model.record import Stage
from lunettes.model.spec import ContainerSpec, PodSpecSummary
from lunettes.model.timeline import PodTimeline
from lunettes.pipeline import DEFAULT_CONFIG_DIR

S = 1_000_000
T0 = 1_700_000_000 * S
UID = "0d7a9e6e-5f7b-4c2a-9a51-3a1f0f3f2b11"


@pytest.fixture(scope="module")
def analyzer() -> StagesAnalyzer:
    return StagesAnalyzer(StageSet.load(DEFAULT_CONFIG_DIR / "stages.yaml"))


class Timeline:
    """Builds a timeline event by event; times are seconds after T0."""

    def __init__(self, restart_policy: str = "Always") -> None:
        self.seq = count()
        self.timeline = PodTimeline(UID, "ns", "web-1", created_us=T0, spec=PodSpecSummary(
            containers=(ContainerSpec("app", "app:1"), ContainerSpec("side", "side:1")),
            init_containers=(ContainerSpec("init", "init:1"),), restart_policy=restart_policy))

    def add(self, t: float, op: str, **facts) -> Timeline:
        source = facts.pop("source", "kubelet" if op in ("status", "event") else "")
        self.timeline.events.append(HyperEvent(T0 + round(t * S), next(self.seq), op, UID,
                                               source=source, **facts))
        return self

    def event(self, t: float, reason: str, container: str = "", init: bool = False,
              image: str = "", kind: str = "Normal") -> Timeline:
        return self.add(t, "event", reason=reason, container=container, init=init,
                        image=image, event_type=kind, message=f"{reason} {image}".strip())

    def status(self, t: float, conditions: dict[str, str] = {},  # noqa: B006
               running: tuple[str, ...] = (), phase: str = "") -> Timeline:
        return self.add(t, "status", phase=phase,
                        conditions=tuple(ConditionChange(k, v) for k, v in conditions.items()),
                        containers=tuple(ContainerChange(c, False, "running") for c in running))


def spans(stages: list[Stage]) -> dict[str, tuple[float, float | None]]:
    return {
        s.name + (f"[{s.instance}]" if s.instance else ""):
        ((s.start_us - T0) / S, None if s.end_us is None else (s.end_us - T0) / S)
        for s in stages
    }


def full_lifecycle() -> Timeline:
    return (Timeline()
            .add(0, "create", source="replicaset-controller")
            .add(0.5, "bind", source="kube-scheduler", node="n1")
            .status(0.8, {"PodReadyToStartContainers": "False", "Initialized": "False"})
            .event(1.0, "Pulling", "init", True, "init:1")
            .event(2.0, "Pulled", "init", True, "init:1")
            .event(2.1, "Created", "init", True)
            .event(2.2, "Started", "init", True)
            .status(2.3, {"PodReadyToStartContainers": "True"})
            .status(4.0, {"Initialized": "True"})
            .event(4.1, "Pulling", "app", image="app:1")
            .event(9.0, "Pulled", "app", image="app:1")
            .event(9.1, "Created", "app")
            .event(9.3, "Started", "app")
            .event(9.4, "Pulled", "side", image="side:1")  # already present: no Pulling
            .event(9.5, "Created", "side")
            .event(9.7, "Started", "side")
            .event(10.0, "Unhealthy", "app", kind="Warning")
            .status(9.8, {}, running=("app", "side"))
            .status(12.0, {"ContainersReady": "True"})
            .status(15.0, {"Ready": "True"}))


def test_full_lifecycle_stage_boundaries(analyzer: StagesAnalyzer) -> None:
    stages = analyzer.analyze(full_lifecycle().timeline, {})
    assert spans(stages) == {
        "delivery": (0, 15.0),
        "scheduling": (0, 0.5),
        "kubelet_pickup": (0.5, 0.8),
        "sandbox": (0.8, 1.0),            # first image/container event comes first
        "image_pull[init:1]": (1.0, 2.0),
        "image_pull[app:1]": (4.1, 9.0),
        "init_containers": (1.0, 4.0),
        "container_create[app]": (9.0, 9.1),
        "container_create[side]": (9.4, 9.5),
        "container_start[app]": (9.1, 9.3),
        "container_start[side]": (9.5, 9.7),
        "readiness": (9.7, 12.0),         # last container started -> ContainersReady
        "readiness_gates": (12.0, 15.0),
    }
    assert [s.parent for s in stages] == ["", *["delivery"] * (len(stages) - 1)]
    owners = {s.name: s.owner for s in stages}
    assert owners["init_containers"] == owners["readiness"] == "user"
    assert owners["image_pull"] == "platform"
    kinds = {s.name: s.instance_kind for s in stages}
    assert kinds["image_pull"] == "image" and kinds["container_start"] == "container"
    warnings = [(s.name, s.instance, e.name) for s in stages for e in s.events]
    assert warnings == [("readiness", "", "Unhealthy")]


def test_status_only_fallback_without_events(analyzer: StagesAnalyzer) -> None:
    """GKE's default policy drops Events: stages fall back to status-patch markers."""
    t = (Timeline().add(0, "create").add(0.2, "bind", node="n1")
         .status(0.6, {"PodReadyToStartContainers": "False"})
         .status(3.0, {"PodReadyToStartContainers": "True", "Initialized": "True"})
         .status(5.0, {"ContainersReady": "True"}, running=("app", "side"))
         .status(5.5, {"Ready": "True"}))
    assert spans(analyzer.analyze(t.timeline, {})) == {
        "delivery": (0, 5.5), "scheduling": (0, 0.2), "kubelet_pickup": (0.2, 0.6),
        "sandbox": (0.6, 3.0), "readiness": (5.0, 5.0), "readiness_gates": (5.0, 5.5),
    }


def test_open_stages_and_outcome(analyzer: StagesAnalyzer) -> None:
    t = (Timeline().add(0, "create").add(0.3, "bind")
         .status(0.5, {"PodReadyToStartContainers": "True"})
         .event(1, "Pulling", "app", image="app:1")
         .event(30, "Failed", "app", image="app:1", kind="Warning")
         .add(40, "delete", source="admin"))
    stages = analyzer.analyze(t.timeline, {})
    assert spans(stages)["image_pull[app:1]"] == (1, None)
    assert spans(stages)["delivery"] == (0, None)
    pull = next(s for s in stages if s.name == "image_pull")
    assert [e.name for e in pull.events] == ["Failed"]
    life = LifecycleAnalyzer().analyze(t.timeline, Inputs.by_role({"stages": stages}))
    assert (life.outcome, life.finished_us) == ("deleted", T0 + 40 * S)


@pytest.mark.parametrize("phase, outcome", [("Succeeded", "completed"), ("Failed", "failed")])
def test_run_to_completion_ends_at_terminal_phase(analyzer: StagesAnalyzer, phase: str,
                                                  outcome: str) -> None:
    t = (Timeline(restart_policy="Never").add(0, "create").add(0.3, "bind")
         .status(2, {"Ready": "True", "ContainersReady": "True"}, running=("app",))
         .status(9, {"Ready": "False"}, phase=phase))
    stages = analyzer.analyze(t.timeline, {})
    assert spans(stages)["delivery"] == (0, 9)  # Ready does not end a Job's delivery
    life = LifecycleAnalyzer().analyze(t.timeline, Inputs.by_role({"stages": stages}))
    assert life.outcome == outcome


def test_partial_timeline_starts_at_first_sight(analyzer: StagesAnalyzer) -> None:
    t = Timeline().add(5, "bind", node="n1").status(6, {"Ready": "True"})
    t.timeline.created_us = None
    stages = analyzer.analyze(t.timeline, {})
    assert spans(stages)["delivery"] == (5, 6)
    assert "scheduling" not in spans(stages)
