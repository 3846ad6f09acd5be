"""The delivery SLO on hand-made timelines run through the real stages, lifecycle and slo
analyzers: who caused the time, the verdicts, class selection, the pod start SLI, config
errors."""

from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Any

import pytest

from lunettes.analyzers.base import Inputs
from lunettes.analyzers.slo import SLOAnalyzer, SLOResult, user_fault_intervals
from lunettes.analyzers.sloclasses import SLOConfig, effective_requests
from lunettes.config.errors import ConfigError
from lunettes.model.hyperevent import ConditionChange, ContainerChange, HyperEvent
from lunettes.model.spec import ContainerSpec, PodSpecSummary
from lunettes.model.timeline import PodTimeline
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config

S = 1_000_000
T0 = 1_700_000_000 * S
UID = "5b0c7a52-3a44-4d7e-9a0e-0c1f3a7f8e21"


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    data = {**load_config(DEFAULT_CONFIG_DIR), "sinks": {}}
    return Pipeline.from_config(DEFAULT_CONFIG_DIR, data)


def spec(**kw: Any) -> PodSpecSummary:
    kw.setdefault("containers", (ContainerSpec("app", "app:1"),))
    return PodSpecSummary(**kw)


class Pod:
    """A Pod's timeline built event by event; times are seconds after T0."""

    def __init__(self, namespace: str = "shop", **spec_kw: Any) -> None:
        self.seq = count()
        self.timeline = PodTimeline(UID, namespace, "web-1", created_us=T0, spec=spec(**spec_kw),
                                    end_reason="delivered")

    def add(self, t: float, op: str, **facts: Any) -> Pod:
        source = facts.pop("source", "kubelet" if op in ("status", "event") else "")
        self.timeline.events.append(HyperEvent(T0 + round(t * S), next(self.seq), op, UID,
                                               source=source, **facts))
        return self

    def event(self, t: float, reason: str, container: str = "app", init: bool = False,
              image: str = "") -> Pod:
        return self.add(t, "event", reason=reason, container=container, init=init,
                        image=image, event_type="Normal")

    def status(self, t: float, conditions: dict[str, str] | None = None,
               running: tuple[str, ...] = (), phase: str = "") -> Pod:
        return self.add(t, "status", phase=phase, conditions=tuple(
            ConditionChange(k, v) for k, v in (conditions or {}).items()),
            containers=tuple(ContainerChange(c, False, "running") for c in running))

    def start(self, bind: float = 0.5, kubelet: float = 0.8, pull: tuple[float, float] = (1, 3),
              started: float = 3.3) -> Pod:
        """create -> bind -> kubelet -> pull app:1 -> created -> started."""
        return (self.add(0, "create", source="replicaset-controller")
                .add(bind, "bind", source="kube-scheduler", node="n1")
                .status(kubelet, {"PodReadyToStartContainers": "False"})
                .event(pull[0], "Pulling", image="app:1")
                .event(pull[1], "Pulled", image="app:1")
                .event(pull[1] + 0.1, "Created")
                .event(started, "Started")
                .status(started + 0.1, {"PodReadyToStartContainers": "True"},
                        running=("app",)))

    def ready(self, containers_ready: float, ready: float) -> Pod:
        return (self.status(containers_ready, {"ContainersReady": "True"})
                .status(ready, {"Ready": "True"}))


def slo(pipeline: Pipeline, pod: Pod) -> dict[str, Any]:
    record = pipeline.record_of(pod.timeline)
    assert record.to_dict()["slo"] == record.results["slo"]
    return record.results["slo"]


def test_slow_readiness_probe_meets_the_slo(pipeline: Pipeline) -> None:
    result = slo(pipeline, Pod().start().ready(120, 120.2))
    assert result["result"] == "met" and result["class"] == "standard"
    assert result["deadline_s"] == 60 and result["delivered"] is True
    assert result["total_s"] == 120.2
    assert result["user_s"] == pytest.approx(120.2 - 3.3)   # readiness + readiness gates
    assert result["platform_s"] == pytest.approx(3.3)
    assert result["user_intervals"] == [["2023-11-14T22:13:23.300000Z",
                                         "2023-11-14T22:15:20.200000Z"]]
    assert result["pod_start_sli_s"] == pytest.approx(3.3 - 2.0)  # without the image pull


def test_slow_kubelet_violates_the_slo(pipeline: Pipeline) -> None:
    pod = Pod().start(bind=0.5, kubelet=95, pull=(96, 97), started=97.5).ready(98, 98.1)
    result = slo(pipeline, pod)
    assert result["result"] == "violated" and result["why"] == ""
    assert result["platform_s"] == pytest.approx(97.5)
    assert result["user_s"] == pytest.approx(98.1 - 97.5)


def test_killed_and_deleted_past_the_deadline(pipeline: Pipeline) -> None:
    pod = (Pod().add(0, "create").add(0.5, "bind", node="n1").status(0.8)
           .event(1, "Pulling", image="app:1").add(30, "delete", source="admin"))
    pod.timeline.end_reason = "deleted"
    result = slo(pipeline, pod)
    assert (result["result"], result["why"]) == ("killed", "deleted before delivery")
    assert result["total_s"] == 30 and result["platform_s"] == 30 and not result["delivered"]

    pod.timeline.events.pop()
    pod.add(90, "delete", source="admin")  # the image pull (platform) hung for 89 s
    result = slo(pipeline, pod)
    assert result["result"] == "violated" and "deleted after" in result["why"]


def test_in_progress_and_timeout(pipeline: Pipeline) -> None:
    # still scheduling when the input ended, 20 s after creation: no verdict yet
    pod = Pod().add(0, "create").status(0.1, {"PodScheduled": "False"})
    pod.timeline.end_reason, pod.timeline.observed_until_us = "end_of_input", T0 + 20 * S
    result = slo(pipeline, pod)
    assert result["result"] == "in_progress" and result["total_s"] == 20
    assert "input ended" in result["why"] and result["pod_start_sli_s"] is None

    # the pod timeout passed while unschedulable: the platform is past its deadline
    pod.timeline.end_reason, pod.timeline.observed_until_us = "timeout", T0 + 2101 * S
    result = slo(pipeline, pod)
    assert result["result"] == "violated" and "pod timeout" in result["why"]
    assert result["platform_s"] == 2101

    # stuck in readiness (a probe that never passes) until the timeout: user time
    stuck = Pod().start()
    stuck.timeline.end_reason, stuck.timeline.observed_until_us = "timeout", T0 + 2101 * S
    result = slo(pipeline, stuck)
    assert result["result"] == "in_progress" and result["platform_s"] == pytest.approx(3.3)
    assert result["user_s"] == pytest.approx(2101 - 3.3)


def test_a_jobs_own_run_is_user_time(pipeline: Pipeline) -> None:
    job = Pod(restart_policy="Never").start().status(4, {"Ready": "True"})
    job.status(600, {"Ready": "False"}, phase="Succeeded")
    result = slo(pipeline, job)
    assert result["result"] == "met" and result["delivered"] is True
    assert result["total_s"] == 600 and result["platform_s"] == pytest.approx(3.3)

    # a Job still running when the pod timeout passes is not the platform's fault
    running = Pod(restart_policy="OnFailure").start()
    running.timeline.end_reason, running.timeline.observed_until_us = "timeout", T0 + 2101 * S
    assert slo(pipeline, running)["result"] == "in_progress"


def test_failed_before_ready_is_killed(pipeline: Pipeline) -> None:
    """A Deployment's Pod evicted or rejected by the kubelet was never delivered."""
    pod = (Pod().add(0, "create").add(0.5, "bind", node="n1")
           .status(2, {"Ready": "False"}, phase="Failed"))
    result = slo(pipeline, pod)
    assert (result["result"], result["delivered"]) == ("killed", False)
    assert "phase Failed" in result["why"]


def test_without_observed_until_an_open_stage_ends_at_last_seen(pipeline: Pipeline) -> None:
    pod = Pod().start()
    pod.timeline.end_reason = "end_of_input"
    result = slo(pipeline, pod)
    assert result["total_s"] == pytest.approx(3.4)  # the last record seen
    assert result["user_s"] == pytest.approx(0.1)   # readiness, open since 3.3


def test_user_stage_inside_a_platform_stage_counts_for_the_platform(pipeline: Pipeline) -> None:
    """An init container (user) that runs while the app image is pulled (platform): only
    the part no platform stage covers is user time."""
    pod = (Pod(init_containers=(ContainerSpec("init", "init:1"),))
           .add(0, "create").add(0.5, "bind", node="n1").status(0.8)
           .event(1, "Pulled", "init", True, "init:1")
           .event(1.1, "Created", "init", True).event(1.2, "Started", "init", True)
           .event(2, "Pulling", image="app:1")           # pulled while init runs
           .event(6, "Pulled", image="app:1")
           .status(10, {"Initialized": "True"})
           .event(10.1, "Created").event(10.3, "Started")
           .status(10.4, running=("app",)).ready(11, 11.1))
    result = slo(pipeline, pod)
    # init 1..10 minus the app's pull 2..6 and container_create 6..10.1 (Pulled ->
    # Created): 1 s of user time; readiness 10.3..11.1: 0.8 s
    assert result["user_s"] == pytest.approx(1.8)
    assert result["platform_s"] == pytest.approx(11.1 - 1.8)
    # SLI: 10.3 - (pull 2..6 + init 1..10 = 1..10)
    assert result["pod_start_sli_s"] == pytest.approx(10.3 - 9)


def test_sli_falls_back_to_status_patches_without_events(pipeline: Pipeline) -> None:
    pod = (Pod().add(0, "create").add(0.2, "bind", node="n1").status(0.6)
           .status(4.0, {"PodReadyToStartContainers": "True"}, running=("app",))
           .ready(5, 5.5))
    result = slo(pipeline, pod)
    assert result["pod_start_sli_s"] == pytest.approx(4.0)
    assert result["result"] == "met"


def test_rejected_and_partial_have_no_verdict(pipeline: Pipeline) -> None:
    rejected = Pod().add(0, "create", code=403)
    rejected.timeline.end_reason = "rejected"
    result = slo(pipeline, rejected)
    assert result["result"] == "not_applicable" and result["why"].startswith("rejected")
    assert result["total_s"] is None

    metadata_only = Pod().add(0, "create").add(0.5, "bind", node="n1").status(0.8)
    metadata_only.timeline.end_reason = "timeout"
    result = slo(pipeline, metadata_only)  # no status bodies: delivery cannot be seen
    assert result["result"] == "not_applicable" and result["why"].startswith("unknown")

    partial = Pod().add(5, "bind", node="n1").ready(6, 7)
    partial.timeline.created_us = None
    result = slo(pipeline, partial)
    assert result["result"] == "not_applicable" and result["why"].startswith("partial")


class Diagnosis:
    """A stand-in for the diagnosis analyzer: marks one span as the user's fault."""

    name = "diagnosis"

    def __init__(self, start_s: float, end_s: float | None) -> None:
        self.interval = (T0 + round(start_s * S), None if end_s is None else
                         T0 + round(end_s * S))

    def analyze(self, timeline: PodTimeline, inputs: Any) -> dict[str, Any]:
        return {"reason": "ImageNotFound", "user_fault_intervals": [self.interval]}


def test_diagnosis_user_fault_intervals_are_subtracted(pipeline: Pipeline) -> None:
    """The image pull 1..80 is a platform stage, but the diagnosis says the user named a
    missing image: that time is the user's and the verdict flips."""
    pod = Pod().start(pull=(1, 80), started=80.3).ready(81, 81.1)
    outputs = pipeline.dag.run(pod.timeline)
    inputs = Inputs.by_role({"stages": outputs["stages"], "lifecycle": outputs["lifecycle"]})
    analyzer = SLOAnalyzer(SLOConfig.load(DEFAULT_CONFIG_DIR / "slo.yaml"))
    assert analyzer.analyze(pod.timeline, inputs).result == "violated"
    diagnosed = analyzer.analyze(pod.timeline, Inputs.by_role({
        **inputs, "fault_intervals": Diagnosis(1, 78).analyze(pod.timeline, {})}))
    assert diagnosed.result == "met"
    assert diagnosed.to_dict()["user_s"] == pytest.approx(77 + 0.8)
    # open fault intervals end with the span; pairs, mappings and attributes all read
    assert user_fault_intervals({"user_fault_intervals": [{"start_us": 1, "end_us": None}]}) \
        == [(1, None)]
    assert user_fault_intervals(SLOResult("met")) == []


def _select(config: SLOConfig, namespace: str = "shop", **kw: Any) -> str:
    return config.select(namespace, spec(**kw) if kw != {"none": True} else None).name


def test_class_selection_by_spec() -> None:
    config = SLOConfig.load(DEFAULT_CONFIG_DIR / "slo.yaml")
    gpu = ContainerSpec("train", "t:1", requests={"nvidia.com/gpu": "1"})
    big = ContainerSpec("a", "a:1", requests={"cpu": "4", "memory": "1Gi"})
    assert _select(config) == "standard"
    assert _select(config, containers=(gpu,), volumes=(("data", "persistentVolumeClaim"),)) \
        == "gpu"  # first match wins
    assert _select(config, volumes=(("cfg", "configMap"), ("data", "persistentVolumeClaim"))) \
        == "stateful"
    assert _select(config, volumes=(("cfg", "configMap"), ("tmp", "emptyDir"))) == "standard"
    assert _select(config, containers=(big, big)) == "large"     # 4 + 4 cores
    assert _select(config, containers=(big,)) == "standard"
    assert _select(config, containers=(big,),                     # the largest init counts
                   init_containers=(ContainerSpec("i", "i:1", limits={"cpu": "8000m"}),)) \
        == "large"
    assert _select(config, has_pod_anti_affinity=True) == "constrained"
    assert _select(config, priority_class_name="system-node-critical") == "system"
    assert config.select("shop", None).name == "standard"


def test_class_selection_by_identity(tmp_path: Path) -> None:
    (tmp_path / "slo.yaml").write_text("""
classes:
  - {name: batch, deadline_s: 600, match: {owner_kinds: [Job, CronJob]}}
  - {name: bare, deadline_s: 30, match: {owner_kinds: none}}
  - {name: teams, deadline_s: 90, match: {namespaces: ["team-*"], labels: {tier: [web, api]}}}
  - name: tiny
    deadline_s: 20
    match: {cpu: {max: 100m}, memory: {max: 128Mi}, containers: {min: 1, max: 1},
            extended_resources: "example.com/*", affinity: false}
  - {name: anywhere, deadline_s: 45, match: {namespaces: kube-*}}
default: {deadline_s: 60}
""")
    config = SLOConfig.load(tmp_path / "slo.yaml")
    small = ContainerSpec("a", "a:1", requests={"cpu": "100m", "memory": "64Mi",
                                                "example.com/fpga": "1"})
    assert _select(config, owner_kind="Job") == "batch"
    assert _select(config, owner_kind="") == "bare"
    assert _select(config, "team-a", owner_kind="ReplicaSet", labels={"tier": "api"}) == "teams"
    assert _select(config, "team-a", owner_kind="ReplicaSet", labels={"tier": "db"}) \
        == "default"
    assert _select(config, owner_kind="ReplicaSet", containers=(small,)) == "tiny"
    assert _select(config, owner_kind="ReplicaSet", containers=(small, small)) == "default"
    assert config.select("kube-system", None).name == "anywhere"  # no spec: namespaces only
    assert config.select("team-a", None).name == "default"
    assert effective_requests(spec(containers=(small, small)), "memory") == 128 * 2**20


def test_config_errors_are_all_reported_with_file_class_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text("""
classes:
  - name: gpu
    deadline_s: 0
    match: {gpus: true, volume_kinds: [persistentVolumeClam]}
  - name: big
    deadline: 60
    match: {cpu: {min: 2 cores, max: 1}, memory: {min: 1Gi, max: 512Mi}}
  - {name: other, deadline_s: 10}
  - {name: big, deadline_s: 10, match: {containers: {min: 1.5}}}
pod_start_sli: {started: container_start, exclud: []}
""")
    with pytest.raises(ConfigError) as error:
        SLOConfig.load(path)
    problems = error.value.problems
    expected = [
        f"{path}: classes[0] (gpu).deadline_s: must be positive",
        f"{path}: classes[0] (gpu).match.volume_kinds: unknown volume kind "
        "'persistentVolumeClam' (did you mean persistentVolumeClaim?)",
        f"{path}: classes[0] (gpu).match.gpus: unknown match key (did you mean gpu?)",
        f"{path}: classes[1] (big).deadline_s: missing (required)",
        f"{path}: classes[1] (big).match.cpu.min: invalid quantity '2 cores'",
        f"{path}: classes[1] (big).match.memory: min is larger than max",
        f"{path}: classes[1] (big).deadline: unknown key (did you mean deadline_s?)",
        f"{path}: classes[2] (other).name: 'other' is reserved",
        f"{path}: classes[3] (big).name: duplicate class name 'big'",
        f"{path}: classes[3] (big).match.containers.min: expected a whole number",
        f"{path}: pod_start_sli.exclud: unknown key (did you mean exclude?)",
        f"{path}: default: missing (required)",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected), problems


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "slo.yaml").write_text("classes: [\n")
    with pytest.raises(ConfigError, match=r"slo\.yaml"):
        SLOConfig.load(tmp_path / "slo.yaml")
    (tmp_path / "pipeline.yaml").write_text(
        "analyzers:\n  stages: {config: %s}\n  lifecycle: {needs: [stages]}\n"
        "  slo: {needs: [stages, lifecycle], confg: x}\nsinks: {}\n"
        % (DEFAULT_CONFIG_DIR / "stages.yaml"))
    with pytest.raises(ConfigError) as error:
        Pipeline.from_config(tmp_path)
    assert any("analyzers.slo.confg: unknown key (did you mean config?)" in p
               for p in error.value.problems)


def test_stages_spans_and_slo_tell_one_story_about_who_owns_the_time(tmp_path: Path) -> None:
    """A Pod unschedulable for a user fault (seen in the status alone: no Events) and a
    healthy one: each stage's user time is the SLO's user time inside it, the stage's
    effective owner owns most of it, and the span's owner attribute says the same."""
    from test_replay_truth import replay, simulate

    from lunettes.analyzers import intervals as iv
    from lunettes.model.spans import pod_trace
    from lunettes.model.times import parse_time

    log, truth = simulate(tmp_path, policy="gke", seed=3, pods=6,
                          scenarios={"unschedulable_taint": 1.0, "healthy": 1.0})
    records, _ = replay(log)
    scenario = {row["uid"]: row["scenario"] for row in truth}
    assert set(scenario.values()) == {"unschedulable_taint", "healthy"}
    for record in records:
        slo = record.results["slo"]
        user = [(parse_time(a), parse_time(b)) for a, b in slo["user_intervals"]]
        trace = pod_trace(record)
        assert trace is not None
        for stage, span in zip(record.stages, trace.spans, strict=True):
            end = stage.end_us if stage.end_us is not None else (
                record.finished_us or record.last_seen_us)
            assert stage.user_intervals == iv.clip(user, stage.start_us, end)
            assert span.owner == stage.effective_owner
            assert ("lunettes.stage.owner", stage.effective_owner) in span.attributes
        by_name = {s.name: s for s in record.stages}
        if scenario[record.uid] == "unschedulable_taint":
            assert record.results["diagnosis"]["reason"] == "UntoleratedTaint"
            assert slo["result"] == "in_progress"  # not a platform violation
            assert by_name["scheduling"].owner == "platform"
            assert by_name["scheduling"].effective_owner == "user"
            assert by_name["delivery"].effective_owner == "user"
        else:
            assert all(s.effective_owner == s.owner for s in record.stages
                       if s.name != "delivery"), record.stages
            root = by_name["delivery"]  # a Job's own run is user time: it may be most
            assert root.effective_owner == ("user" if 2 * slo["user_s"] > slo["total_s"]
                                            else "platform")
