"""Managed-cluster log shapes: AKS resource logs, EKS CloudWatch, BOMs, stripped kinds,
rotated names in directories, and kubelets that are not ``system:node:<name>``."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import orjson
from realdata import real
from test_replay_truth import replay, simulate

from lunettes.sources.files import FileSource

BOM = b"\xef\xbb\xbf"


def _events() -> list[dict]:
    """The 100 real OpenShift events, in time order (they are the wrapped payloads here)."""
    lines = Path(real("openshift-4.12-requestresponse.jsonl")).read_bytes().splitlines()
    return sorted((orjson.loads(x) for x in lines), key=lambda e: e["requestReceivedTimestamp"])


def _read(*paths: str) -> tuple[list, FileSource]:
    source = FileSource(paths, every_record=True)
    return list(source), source


def _resource_log(event: dict, category: str = "kube-audit") -> dict:
    """An Azure Monitor resource log record of AKS, as diagnostic settings write it."""
    return {"time": event["requestReceivedTimestamp"], "category": category,
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "resourceId": "/SUBSCRIPTIONS/0/RESOURCEGROUPS/RG/PROVIDERS/"
                          "MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS",
            "properties": {"log": json.dumps(event), "stream": "stdout",
                           "pod": "kube-apiserver-7d9d8c8c5-abcde"}}


def test_bom_at_the_start_of_a_file_loses_no_record(tmp_path: Path) -> None:
    events = _events()[:5]
    body = BOM + b"\n".join(orjson.dumps(e) for e in events) + b"\n"
    plain, packed = tmp_path / "audit.json", tmp_path / "audit.json.gz"
    plain.write_bytes(body)
    packed.write_bytes(gzip.compress(body))
    for path in (plain, packed):
        records, source = _read(str(path))
        assert source.bad.total == 0, source.bad.report()
        assert [r.audit_id for r in records] == [e["auditID"] for e in events]


def test_aks_event_hubs_batches_each_inner_event_a_record_with_its_place(
        tmp_path: Path) -> None:
    events = _events()
    first, second = events[:60], events[60:]
    hub = tmp_path / "hub.json"
    hub.write_bytes(BOM + orjson.dumps({"records": [_resource_log(e) for e in first]},
                                       option=orjson.OPT_INDENT_2))
    lines = tmp_path / "hub.jsonl"  # one Event Hubs message per line
    lines.write_bytes(b"\n".join(
        orjson.dumps({"records": [_resource_log(e) for e in second[i:i + 10]]})
        for i in range(0, len(second), 10)) + b"\n")
    records, source = _read(str(hub), str(lines))
    assert source.bad.total == 0, source.bad.report()
    assert [r.audit_id for r in records] == [e["auditID"] for e in events]
    assert records[0].origin == f"{hub}:1#1" and records[59].origin == f"{hub}:1#60"
    assert records[60].origin == f"{lines}:1#1" and records[99].origin == f"{lines}:4#10"


def test_aks_storage_account_lines_and_other_categories_are_counted(tmp_path: Path) -> None:
    events = _events()[:20]
    rows = [_resource_log(e) for e in events]
    rows.insert(3, {**_resource_log(events[0], "kube-apiserver"),
                    "properties": {"log": "I0101 00:00:00.000000 1 server.go:1] started"}})
    rows.insert(7, {**_resource_log(events[0]), "properties": {"log": "{not json"}})
    path = tmp_path / "PT1H.json"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    records, source = _read(str(path))
    assert [r.audit_id for r in records] == [e["auditID"] for e in events]
    assert source.bad.counts == Counter({"not_audit_category": 1, "invalid_json:log": 1})
    assert source.bad.samples["not_audit_category"][0].startswith(f"{path}:4")


def test_events_without_kind_and_api_version_are_accepted(tmp_path: Path) -> None:
    events = _events()[:10]
    stripped = [{k: v for k, v in e.items() if k not in ("kind", "apiVersion")}
                for e in events]
    path = tmp_path / "audit.log"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in stripped)
                     + b'\n{"auditID": "x", "hello": 1}\n')
    records, source = _read(str(path))
    assert [r.audit_id for r in records] == [e["auditID"] for e in events]
    assert source.bad.counts == Counter({"unknown_kind": 1})


def test_eks_cloudwatch_answers_and_s3_exports(tmp_path: Path) -> None:
    events = _events()
    answer = {"events": [{"logStreamName": "kube-apiserver-audit-0123456789abcdef",
                          "timestamp": 1_700_000_000_000 + i, "message": json.dumps(e),
                          "ingestionTime": 1_700_000_001_000, "eventId": str(i)}
                         for i, e in enumerate(events[:50])],
              "searchedLogStreams": [], "nextToken": "t"}
    api = tmp_path / "filter-log-events.json"
    api.write_text(json.dumps(answer, indent=2))
    s3 = tmp_path / "000000.gz"  # CloudWatch's export task: "<time> <message>" lines
    s3.write_bytes(gzip.compress(b"".join(
        e["requestReceivedTimestamp"][:23].encode() + b"Z " + orjson.dumps(e) + b"\n"
        for e in events[50:])))
    records, source = _read(str(api), str(s3))
    assert source.bad.total == 0, source.bad.report()
    assert [r.audit_id for r in records] == [e["auditID"] for e in events]
    assert records[50].origin == f"{s3}:1"


def test_directories_read_rotated_names_in_time_order_and_say_what_they_skip(
        tmp_path: Path) -> None:
    events = _events()
    logs = tmp_path / "logs"
    logs.mkdir()
    parts = [events[:25], events[25:50], events[50:75], events[75:]]

    def lines(part: list[dict]) -> bytes:
        return b"\n".join(orjson.dumps(e) for e in part) + b"\n"

    (logs / "audit.log-20260101").write_bytes(lines(parts[0]))
    (logs / "audit-2026-01-02T00-00-00.000.log").write_bytes(lines(parts[2]))
    (logs / "audit.log-20260101b.gz").write_bytes(gzip.compress(lines(parts[1])))
    (logs / "audit.log").write_bytes(BOM + lines(parts[3]))
    (logs / "README.md").write_text("# rotated audit logs\n")
    (logs / ".audit.log.swp").write_bytes(b"\x00\x01")
    records, source = _read(str(logs))
    assert source.bad.total == 0, source.bad.report()
    assert [r.audit_id for r in records] == [e["auditID"] for e in events]
    assert sorted(source.skipped_files) == [
        f"{logs}/.audit.log.swp: hidden file",
        f"{logs}/README.md: not an audit log (starts with b'# rotated audit ')"]


def _as_aks_kubelet(line: bytes) -> bytes:
    """The line with a kubelet that AKS names ``nodeclient`` (group and user agent left)."""
    event = orjson.loads(line)
    user = event.get("user") or {}
    if str(user.get("username", "")).startswith("system:node:"):
        event["user"] = {"username": "nodeclient",
                         "groups": ["system:nodes", "system:authenticated"]}
    return orjson.dumps(event)


def test_kubelet_known_by_its_group_gives_the_same_traces(tmp_path: Path) -> None:
    log, _ = simulate(tmp_path, policy="requestresponse", seed=21, pods=60)
    aks = tmp_path / "aks.jsonl"
    with gzip.open(log, "rb") as src:
        aks.write_bytes(b"\n".join(_as_aks_kubelet(x) for x in src.read().splitlines()))
    named, _ = replay(log)
    grouped, _ = replay(aks)

    def traces(records: list) -> dict:
        return {r.uid: (r.outcome, [(s.name, s.instance, s.start_us, s.end_us)
                                    for s in r.stages]) for r in records}

    assert any(name == "kubelet_pickup" and end for _, stages in traces(named).values()
               for name, _, _, end in stages)
    assert traces(grouped) == traces(named)
