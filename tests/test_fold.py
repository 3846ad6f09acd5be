"""Folding real audit records into per-Pod timelines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from realdata import real

from lunettes.model.audit import AuditRecord
from lunettes.model.hyperevent import ConditionChange, ContainerChange, HyperEvent
from lunettes.model.timeline import PodTimeline
from lunettes.processors.fold import Folder
from lunettes.sources.files import FileSource

SAMPLE = Path(__file__).resolve().parents[1] / "lunettes" / "data" / "sample-audit.jsonl.gz"
GKE_UID = "c0b4e00d-da76-4255-9a02-670d5b74aa3a"


def _never(timeline: PodTimeline, event: HyperEvent) -> bool:
    return False


def _fold(*paths: str, delivered=_never) -> tuple[list[PodTimeline], Counter[str]]:
    stats: Counter[str] = Counter()
    folder = Folder(delivered, stats)
    for record in FileSource(paths):
        if record.stage == "ResponseComplete":
            folder.add(record)
    return list(folder.drain()), stats


def test_gke_create_then_status_patches_share_one_uid() -> None:
    timelines, _ = _fold(*(real(f"gke-cloud-logging/container_recorder_test_1_{i}.yaml")
                           for i in (1, 2, 3)))
    assert [t.uid for t in timelines] == [GKE_UID]
    timeline = timelines[0]
    assert timeline.name == "nginx-deployment-surge-8655b4b8c5-xf5f4"
    assert not timeline.partial and timeline.spec is not None
    assert [c.name for c in timeline.spec.containers] == ["late-startup", "nginx"] or \
        sorted(c.name for c in timeline.spec.containers) == ["late-startup", "nginx"]
    assert timeline.spec.owner_kind == "ReplicaSet"
    ops = [e.op for e in timeline.ordered()]
    assert ops == ["create", "status", "status"]
    first, second = timeline.events[1], timeline.events[2]
    assert {(c.name, c.state, c.reason) for c in first.containers} == {
        ("late-startup", "waiting", "ContainerCreating"), ("nginx", "waiting", "ContainerCreating")}
    assert first.source == "kubelet" and first.node.startswith("gke-sample-cluster")
    assert {c.type: c.status for c in first.conditions}["Ready"] == "False"
    running = {c.name for c in second.containers if c.state == "running"}
    assert running, "the third capture shows containers running"


def test_podsecurity_denials_become_rejected_timelines() -> None:
    timelines, _ = _fold(real("openshift-4.12-requestresponse.jsonl"))
    rejected = [t for t in timelines if t.end_reason == "rejected"]
    assert len(rejected) == 4
    for t in rejected:
        create = t.events[0]
        assert create.op == "create" and create.code == 403
        assert "violates PodSecurity" in create.message
        assert t.uid_derived and t.name  # named from the error message
        assert t.spec is not None and t.spec.containers


def test_metadata_log_gives_partial_timelines_by_name() -> None:
    timelines, stats = _fold(real("perfspec-kubeadm-metadata.jsonl.gz"))
    by_name = {t.name: t for t in timelines}
    # 45 generateName creates cannot be named at Metadata level
    assert stats["unidentified"] >= 45 - 16
    assert sum(t.end_reason == "rejected" for t in timelines) == 16
    redis = by_name["my-redis-master-0"]
    assert not redis.partial and redis.uid_derived
    assert [e.op for e in redis.ordered()][:2] == ["create", "status"]
    assert redis.events[1].source == "kube-scheduler"
    events = [e for e in redis.events if e.op == "event"]
    assert len(events) == 4  # one create and three patches of the FailedScheduling Event
    bound = [t for t in timelines if any(e.op == "bind" for e in t.events)]
    assert len(bound) >= 20
    assert all(t.uid_derived for t in bound)


def test_falco_pod_creates_have_spec_summaries() -> None:
    paths = [str(p) for p in sorted(Path(real("falco-v1beta1")).glob("create_nginx_pod_*.json"))]
    creates = [r for r in FileSource(paths) if r.verb == "create"]
    timelines, stats = _fold(*paths)
    # two captures hold the same request: the second create of a UID is not a new Pod
    unique = {r.response["metadata"]["uid"] for r in creates if r.response}
    assert len(timelines) == len(unique) == len(creates) - 1
    assert stats["duplicate_create"] == 1
    for t in timelines:
        assert t.spec is not None and t.spec.images
        assert not t.uid_derived, "the response carries the real UID"


S = 1_000_000


def _record(t: float, verb: str, subresource: str = "", **kw) -> AuditRecord:
    return AuditRecord(f"a-{t}-{verb}", "ResponseComplete", verb, round(t * S),
                       resource="pods", subresource=subresource, namespace="ns", name="p",
                       code=201 if verb == "create" else 200, **kw)


def _ready(t: float) -> AuditRecord:
    return _record(t, "patch", "status", username="system:node:n1",
                   request={"metadata": {"uid": "u1"}, "status": {"conditions": [
                       {"type": "Ready", "status": "True"}]}})


def _ready_check(timeline: PodTimeline, event: HyperEvent) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in event.conditions)


def test_pods_leave_memory_after_linger_and_late_records_are_dropped() -> None:
    stats: Counter[str] = Counter()
    folder = Folder(_ready_check, stats, linger_us=5 * S, timeout_us=100 * S,
                    forget_us=50 * S)
    folder.add(_record(0, "create", response={"metadata": {"uid": "u1", "name": "p"}}))
    folder.add(_ready(2))
    assert folder.advance(6.9 * S) == [] and "u1" in folder.live
    (done,) = folder.advance(7 * S)
    assert done.end_reason == "delivered" and not folder.live
    folder.add(_ready(8))  # a trailing record about the finished Pod
    assert stats["after_final"] == 1 and not folder.live
    folder.advance(60 * S)  # past forget_after: the Pod is forgotten
    folder.add(_ready(61))
    assert "u1" in folder.live and folder.live["u1"].timeline.partial


def test_pods_time_out_on_the_audit_clock() -> None:
    stats: Counter[str] = Counter()
    folder = Folder(_ready_check, stats, timeout_us=100 * S)
    folder.add(_record(0, "create", response={"metadata": {"uid": "u1", "name": "p"}}))
    assert folder.advance(99 * S) == []
    (done,) = folder.advance(100 * S)
    assert done.end_reason == "timeout"


def test_delete_ends_delivery_and_name_reuse_starts_a_new_incarnation() -> None:
    stats: Counter[str] = Counter()
    folder = Folder(_ready_check, stats, linger_us=1 * S)
    folder.add(_record(0, "create", response={"metadata": {"uid": "u1", "name": "p"}}))
    folder.add(_record(1, "delete"))
    (first,) = folder.advance(2 * S)
    assert first.uid == "u1" and first.end_reason == "deleted"
    folder.add(_record(3, "create", response={"metadata": {"uid": "u2", "name": "p"}}))
    folder.add(_record(4, "create", "binding", request={"target": {"name": "n2"}}))
    assert [e.op for e in folder.live["u2"].timeline.events] == ["create", "bind"]
    assert folder.live["u2"].timeline.node == "n2"



def test_a_restored_folder_reading_the_same_log_again_starts_no_pod() -> None:
    """After a restart, the records of Pods a checkpoint lists as finished are read again;
    the four PodSecurity denials of the capture (rejected creates, whose UID is their
    auditID) must not come back as new Pods, no more than the admitted ones."""
    records = [r for r in FileSource([real("openshift-4.12-requestresponse.jsonl")])
               if r.stage == "ResponseComplete"]
    first = Folder(_never, Counter())
    for record in records:
        first.add(record)
    assert sum(t.end_reason == "rejected" for t in first.drain()) == 4
    stats: Counter[str] = Counter()
    restored = Folder(_never, stats)
    restored.restore(first.finished())
    for record in records:
        restored.add(record)
    assert list(restored.drain()) == []
    assert stats["pods_seen"] == 0 and stats["after_final"] >= 4


def test_a_final_timeline_is_sorted_once_by_the_fold() -> None:
    """Records folded out of time order (a late record, as the window lets through) come
    out sorted by (time, arrival) in the timeline the fold hands over; the analyzers then
    read that very list, sorted no more."""
    records = [r for r in FileSource([str(SAMPLE)]) if r.stage == "ResponseComplete"][:3000]
    shuffled = records[::2] + records[1::2]  # every other record arrives late
    stats: Counter[str] = Counter()
    folder = Folder(_never, stats)
    for record in shuffled:
        folder.add(record)
    timelines = list(folder.drain())
    assert stats["hyperevents"] > 100
    for timeline in timelines:
        assert timeline.in_order
        times = [(e.time_us, e.seq) for e in timeline.events]
        assert times == sorted(times)
        events = timeline.events
        assert timeline.ordered() is events and [(e.time_us, e.seq) for e in events] == times
    assert any([e.seq for e in t.events] != sorted(e.seq for e in t.events)
               for t in timelines), "some records were folded out of order"


def test_a_hyperevent_key_is_read_once_and_shared() -> None:
    """The key every marker lookup uses (op, reason, condition types, container states,
    has a phase) is the event's own facts, computed once and shared by equal events."""
    ready = ConditionChange("Ready", "True")
    running = ContainerChange("app", False, "running")
    one = HyperEvent(1, 1, "status", "u", conditions=(ready,), containers=(running,),
                     phase="Running")
    two = HyperEvent(2, 2, "status", "v", conditions=(ready,), containers=(running,),
                     phase="Running")
    assert one.key == ("status", "", ("Ready",), ("running",), True)
    assert one.key is one.key is two.key
    assert HyperEvent(3, 3, "event", "u", reason="Pulled").key == (
        "event", "Pulled", (), (), False)
