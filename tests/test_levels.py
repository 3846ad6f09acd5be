"""Audit levels and partial logs: what lunettes says when the log lacks bodies or began late.

The logs here are real records (falco, OpenShift, perfspec captures) arranged by the test:
what each Pod went through is known from that arrangement, not from lunettes' rules.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry
from realdata import real
from test_replay_truth import replay, simulate

from lunettes.model.times import format_time, parse_time
from lunettes.sinks.prometheus import PrometheusSink

S = 1_000_000


def _falco_create() -> dict:
    """A real RequestResponse pod create (the kube-public one of the falco traces)."""
    return orjson.loads(Path(real("falco-v1beta1/create_pod_kube_public_namespace.json"))
                        .read_bytes())


def _clock(event: dict, at_us: int) -> dict:
    """A record about another resource at ``at_us``: it only moves the audit clock."""
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": f"clock-{at_us}", "stage": "ResponseComplete",
            "requestURI": "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            "verb": "update", "user": {"username": "system:node:n1"},
            "objectRef": {"resource": "leases", "namespace": "kube-node-lease", "name": "n1",
                          "apiGroup": "coordination.k8s.io", "apiVersion": "v1"},
            "responseStatus": {"code": 200}, "requestReceivedTimestamp": format_time(at_us),
            "stageTimestamp": format_time(at_us)}


def _write(path: Path, events: list[dict]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    return path


def test_requestresponse_pod_never_scheduled_times_out_at_scheduling(tmp_path: Path) -> None:
    create = _falco_create()
    at = parse_time(create["requestReceivedTimestamp"])
    # the clock moves a minute at a time (a record far ahead of it would be quarantined)
    log = _write(tmp_path / "audit.log", [create, *(_clock(create, at + m * 60 * S)
                                                   for m in range(1, 41))])
    (record,), _ = replay(log)
    assert record.outcome == "timeout"  # nothing for 40 min > the 35 min pod timeout
    diagnosis = record.results["diagnosis"]
    assert (diagnosis["reason"], diagnosis["last_stage"]) == ("NoProgress", "scheduling")
    assert [(s.name, s.end_us) for s in record.stages] == [("delivery", None),
                                                            ("scheduling", None)]


def test_created_recovered_from_a_later_body_when_the_log_began_late(tmp_path: Path) -> None:
    pod = _falco_create()["responseObject"]
    stamp = pod["metadata"]["creationTimestamp"]  # 2018-10-26T13:49:19Z
    at = parse_time(stamp) + 7 * S
    patch = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
             "auditID": "patch-1", "stage": "ResponseComplete", "verb": "patch",
             "user": {"username": "system:node:minikube"},
             "objectRef": {"resource": "pods", "subresource": "status",
                           "namespace": "kube-public", "name": pod["metadata"]["name"],
                           "apiVersion": "v1"},
             "responseStatus": {"code": 200},
             "requestObject": {"metadata": {"uid": pod["metadata"]["uid"]},
                               "status": {"phase": "Pending"}},
             "responseObject": {**pod, "status": {"phase": "Pending"}},
             "requestReceivedTimestamp": format_time(at)}
    (record,), _ = replay(_write(tmp_path / "audit.log", [patch]))
    assert record.partial and record.created_us == parse_time(stamp)
    assert record.results["slo"]["result"] == "not_applicable"  # no verdict on a partial Pod


def _stage_key(stage) -> tuple[str, str]:
    return stage.name, stage.instance


def _is_pod_create(event: dict) -> bool:
    ref = event.get("objectRef") or {}
    return (event["verb"] == "create" and ref.get("resource") == "pods"
            and not ref.get("subresource"))


def test_partial_pods_put_only_durations_the_whole_log_agrees_with_into_histograms(
        tmp_path: Path) -> None:
    log, _ = simulate(tmp_path, policy="requestresponse", seed=41, pods=120)
    whole, _ = replay(log)
    events = [orjson.loads(x) for x in gzip.decompress(log.read_bytes()).splitlines()]
    creates = [i for i, e in enumerate(events) if _is_pod_create(e)]
    # a log that began late: a third of the way in, and one that missed every other create
    late = _write(tmp_path / "late.jsonl", events[len(events) // 3:])
    missed = set(creates[::2])
    gaps = _write(tmp_path / "gaps.jsonl", [e for i, e in enumerate(events) if i not in missed])
    truth = {r.uid: {_stage_key(s): s.duration_s for s in r.stages} for r in whole}
    observed = []
    for path in (late, gaps):
        partial = [r for r in replay(path)[0] if r.partial]
        assert len(partial) > 10
        measured = [(r.uid, s) for r in partial for s in r.measured_stages()]
        registry = CollectorRegistry()
        PrometheusSink(registry).export(partial)
        count = sum(sample.value for metric in registry.collect()
                    if metric.name == "lunettes_pod_stage_duration_seconds"
                    for sample in metric.samples if sample.name.endswith("_count"))
        assert count == len(measured)
        observed.extend(measured)
    assert observed, "partial Pods bound within the log still tell their later stages"
    made_up = [(uid, s.name, s.instance, s.duration_s, truth[uid].get(_stage_key(s)))
               for uid, s in observed if truth[uid].get(_stage_key(s)) != s.duration_s]
    assert made_up == []


def test_metadata_level_pods_name_the_log_level_as_the_cause() -> None:
    records, _ = replay(Path(real("perfspec-kubeadm-metadata.jsonl.gz")))
    unknown = [r for r in records if r.outcome == "unknown"]
    assert len(unknown) == 35
    for record in unknown:
        diagnosis = record.results["diagnosis"]
        assert "Metadata level" in diagnosis["message"], diagnosis
        assert "audit level is the cause" in diagnosis["hint"] and "rule" not in \
            diagnosis["hint"]


def test_refused_create_on_a_metadata_log_is_the_users_not_the_platforms(
        tmp_path: Path) -> None:
    lines = Path(real("openshift-4.12-requestresponse.jsonl")).read_bytes().splitlines()
    denied = [e for e in map(orjson.loads, lines) if e["verb"] == "create"
              and e["objectRef"].get("resource") == "pods" and e["responseStatus"]["code"] == 403]
    metadata = [{**{k: v for k, v in e.items() if k not in ("requestObject", "responseObject")},
                 "level": "Metadata"} for e in denied]
    records, _ = replay(_write(tmp_path / "audit.log", metadata))
    assert len(records) == 4
    for record in records:
        diagnosis = record.results["diagnosis"]
        assert record.outcome == "rejected"
        assert (diagnosis["reason"], diagnosis["owner"]) == ("AdmissionDenied", "user")
        assert diagnosis["message"] == "denied by PodSecurity baseline:v1.25"
        assert record.results["slo"]["result"] == "not_applicable"
