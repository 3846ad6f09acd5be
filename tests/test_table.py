"""The replay table fits the terminal, the summary counts records about Pods apart from
the others, and the progress bar of compressed input counts compressed bytes."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from lunettes.cli.main import main
from lunettes.cli.replay import _total_bytes
from lunettes.cli.table import pod_table
from lunettes.model.record import PodRecord, Stage
from lunettes.registry import default_results
from lunettes.sources.files import FileSource

T0 = 1_700_000_000_000_000
S = 1_000_000


def _record(name: str, outcome: str, total_s: float | None,
            stages: list[tuple[str, float | None]], slo: str, reason: str) -> PodRecord:
    start = T0
    built = [Stage("delivery", "platform", T0, None if total_s is None else T0 + int(total_s * S))]
    for stage, seconds in stages:
        built.append(Stage(stage, "platform", start,
                           None if seconds is None else start + int(seconds * S),
                           parent="delivery"))
        start += int((seconds or 0) * S)
    return PodRecord(uid=name, namespace="team-payments-production", name=name, node="n1",
                     created_us=T0, outcome=outcome, stages=built,
                     finished_us=None if total_s is None else T0 + int(total_s * S),
                     results={"slo": {"result": slo}, "diagnosis": {"reason": reason}})


RECORDS = [
    _record("checkout-7f9c6d5b8-abcde", "delivered", 172.65,
            [("scheduling", 0.08), ("kubelet_pickup", 0.37), ("sandbox", 1.46),
             ("image_pull", 166.31), ("readiness", 4.0)], "violated", "ImagePullBackOff"),
    _record("payments-worker-5d8f7c9b6-xyz12", "in_progress", None,
            [("scheduling", 0.05), ("kubelet_pickup", 0.4), ("sandbox", 2.0),
             ("readiness", None)], "not_applicable", "VolumeNodeAffinityConflict"),
]


def _render(width: int, wide: bool = False) -> list[str]:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(pod_table(RECORDS, console.width, default_results(), wide))
    return console.export_text().splitlines()


def test_at_100_columns_outcome_total_results_and_slowest_stages_are_readable() -> None:
    lines = _render(100)
    assert max(len(line.rstrip()) for line in lines) <= 100
    text = "\n".join(lines)
    for word in ("delivered", "172.65", "violated", "ImagePullBackOff", "in_progress",
                 "not_applicable", "VolumeNodeAffinit", "image_pull=166.31", "readiness=4.00",
                 "sandbox=1.46", "readiness=open", "sandbox=2.00", "kubelet_pickup=0.40"):
        assert word in text, word
    # Only the three slowest (open ones first): the quick ones are left to --wide.
    assert "scheduling=" not in text and "kubelet_pickup=0.37" not in text
    # Names are cut in the middle: the namespace's start and the Pod's end stay.
    assert "team-pay" in text and "b8-abcde" in text and "b6-xyz12" in text


def test_wide_shows_every_stage_node_and_creation() -> None:
    text = "\n".join(_render(240, wide=True))
    for stage in ("scheduling=0.08", "kubelet_pickup=0.37", "sandbox=1.46", "image_pull=166.31",
                  "readiness=4.00", "scheduling=0.05", "readiness=open"):
        assert stage in text, stage
    assert "2023-11-14T22:13:20" in text and " n1 " in text


def test_narrow_terminal_cuts_results_not_outcome_or_total() -> None:
    lines = _render(80)
    assert max(len(line.rstrip()) for line in lines) <= 80
    text = "\n".join(lines)
    for word in ("in_progress", "172.65", "image_pull=166.31", "readiness=open", "violated"):
        assert word in text, word


def _event(audit_id: str, verb: str, resource: str, name: str, t: str, **extra: object
           ) -> dict[str, object]:
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": audit_id, "stage": "ResponseComplete", "verb": verb,
            "requestReceivedTimestamp": t, "stageTimestamp": t,
            "user": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "objectRef": {"resource": resource, "namespace": "default", "name": name,
                          "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 201 if verb == "create" else 200},
            **extra}


def test_summary_counts_only_records_folded_into_pods_as_in_pod_timelines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pod = {"kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
           "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
    lines = [
        # three records about the Pod web
        _event("a1", "create", "pods", "web", "2024-01-01T00:00:00.000000Z",
               requestObject=pod, responseObject=pod),
        _event("a2", "patch", "pods", "web", "2024-01-01T00:00:01.000000Z",
               objectRef={"resource": "pods", "subresource": "status", "namespace": "default",
                          "name": "web", "apiVersion": "v1"},
               requestObject={"metadata": {"uid": "u-1"}, "status": {"phase": "Pending"}},
               responseObject={**pod, "status": {"phase": "Pending"}}),
        _event("a3", "delete", "pods", "web", "2024-01-01T00:00:02.000000Z",
               responseObject=pod),
        # an Event about a Node: decoded (it could have been about a Pod), not about one
        _event("a4", "create", "events", "n1.17a", "2024-01-01T00:00:03.000000Z",
               requestObject={"kind": "Event", "reason": "NodeReady", "type": "Normal",
                              "involvedObject": {"kind": "Node", "name": "n1"}}),
        # a lease renewal: never decoded
        _event("a5", "update", "leases", "n1", "2024-01-01T00:00:04.000000Z"),
    ]
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert main(["replay", str(log), "--format", "none", "--no-store"]) == 0
    err = capsys.readouterr().err
    assert "read 5 records: 3 in Pod timelines" in err, err
    assert "2 others (" in err, err


def test_progress_of_gzip_input_counts_compressed_bytes(tmp_path: Path) -> None:
    plain = b"".join(orjson.dumps(_event(f"id{i}", "update", "leases", "n1",
                                         "2024-01-01T00:00:00.000000Z")) + b"\n"
                     for i in range(2000))
    packed = tmp_path / "audit.log.gz"
    packed.write_bytes(gzip.compress(plain))
    read: list[int] = []
    source = FileSource([str(packed)], on_bytes=read.append)
    assert sum(1 for _ in source) == 2000
    assert sum(read) == packed.stat().st_size == _total_bytes([str(packed)])
    assert packed.stat().st_size < len(plain) // 5  # the total is not the inflated size
