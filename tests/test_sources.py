"""Sources: every real capture is read whole, and bad input is counted with its place."""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from api_server import SAMPLE
from realdata import REAL, real

from lunettes.model.audit import FOLDED_VERBS, SKIPPED_STAGE, TICK_STAGE, AuditRecord
from lunettes.model.times import parse_time
from lunettes.processors.bodies import meta
from lunettes.sources.files import FileSource
from lunettes.sources.partition import Partition
from lunettes.sources.prescan import Prescan


def _read(*paths: str) -> tuple[list, FileSource]:
    """Every record decoded, and the source."""
    source = FileSource(paths, every_record=True)
    return list(source), source


def _plain_events(path: str) -> list[dict]:
    """Independent oracle: the audit Events a plain json reader finds in a JSON-lines file."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return [e for e in map(json.loads, f) if e.get("kind") == "Event"]


def _about_pods(event: dict) -> bool:
    ref = event.get("objectRef") or {}
    return event["verb"] in FOLDED_VERBS.get(ref.get("resource", ""), ())


@pytest.mark.parametrize("name, events", [
    ("perfspec-kubeadm-metadata.jsonl.gz", 16563),
    ("openshift-4.12-requestresponse.jsonl", 100),
    ("openshift-4.12-small.jsonl", 5),
    ("audit2rbac-demo-metadata.jsonl", 37),
])
def test_real_jsonl_captures_are_read_whole(name: str, events: int) -> None:
    path = real(name)
    records, source = _read(path)
    assert len(records) == events == len(_plain_events(path))
    assert source.bad.total == 0
    assert all(r.audit_id and r.verb and r.received_us > 1_400_000_000_000_000 for r in records)


@pytest.mark.parametrize("name", ["perfspec-kubeadm-metadata.jsonl.gz",
                                  "openshift-4.12-requestresponse.jsonl",
                                  "audit2rbac-demo-metadata.jsonl"])
def test_records_about_other_resources_only_move_the_clock(name: str) -> None:
    path = real(name)
    plain = _plain_events(path)
    source = FileSource([path])
    out = list(source)
    decoded = {(r.audit_id, r.stage) for r in out if r.stage != SKIPPED_STAGE}
    assert source.bad.total == 0 and all(r.stage != TICK_STAGE for r in out)
    assert len(decoded) + sum(r.stage == SKIPPED_STAGE for r in out) == len(plain)
    # every record about a Pod is decoded; what is not decoded is about something else
    assert {(e["auditID"], e["stage"]) for e in plain if _about_pods(e)} <= decoded
    skipped = [e for e in plain if (e["auditID"], e["stage"]) not in decoded]
    assert not any(_about_pods(e) for e in skipped)
    # the final stages of the others still move the clock, in order
    assert [r.received_us for r in out if r.stage == SKIPPED_STAGE] == [
        parse_time(e["requestReceivedTimestamp"])
        if e["stage"] in ("ResponseComplete", "Panic") else 0 for e in skipped]


def test_perfspec_counts_match_provenance() -> None:
    records, _ = _read(real("perfspec-kubeadm-metadata.jsonl.gz"))
    kinds = Counter((r.resource, r.subresource, r.verb) for r in records
                    if r.stage == "ResponseComplete")
    creates = [r for r in records if r.resource == "pods" and not r.subresource
               and r.verb == "create"]
    assert len(creates) == 52
    assert sum(r.code == 403 for r in creates) == 16
    # generateName creates carry no name; the 7 StatefulSet pods are created by name
    assert sorted(r.name.rsplit("-", 1)[-1] for r in creates if r.name) == ["0"] * 7
    assert kinds[("pods", "binding", "create")] == 28
    assert kinds[("pods", "status", "patch")] == 100
    assert kinds[("events", "", "create")] == 236
    assert all(r.request is None and r.response is None for r in records)  # Metadata level


def test_v1beta1_single_objects() -> None:
    files = sorted(REAL.glob("falco-v1beta1/*.json")) or pytest.skip("no falco captures")
    records, source = _read(*map(str, files))
    assert len(records) == len(files) and source.bad.total == 0
    pod_creates = [r for r in records if r.resource == "pods" and r.verb == "create"
                   and not r.subresource]
    assert pod_creates and all(r.request and r.request["kind"] == "Pod" for r in pod_creates)


def test_gke_cloud_logging_entries_become_audit_records() -> None:
    records, source = _read(real("gke-cloud-logging/container_recorder_test_1_1.yaml"),
                            real("gke-cloud-logging/container_recorder_test_1_2.yaml"),
                            real("gke-cloud-logging/oss-format-test-log.yaml"))
    assert source.bad.total == 0 and len(records) == 3
    create, patch, lease = records
    assert (create.resource, create.verb, create.code) == ("pods", "create", 201)
    assert create.namespace == "1-2-deployment-update"
    assert (patch.resource, patch.subresource, patch.verb) == ("pods", "status", "patch")
    assert patch.name == "nginx-deployment-surge-8655b4b8c5-xf5f4"
    assert patch.username.startswith("system:node:")
    assert patch.request and patch.request["metadata"]["uid"] == \
        "c0b4e00d-da76-4255-9a02-670d5b74aa3a"
    assert (lease.resource, lease.verb, lease.api_group) == ("leases", "update",
                                                             "coordination.k8s.io")


def test_eventlist_gz_and_directory_in_time_order(tmp_path: Path) -> None:
    lines = Path(real("openshift-4.12-requestresponse.jsonl")).read_bytes().splitlines()
    events = [orjson.loads(x) for x in lines]
    events.sort(key=lambda e: e["requestReceivedTimestamp"])
    old, new = events[:50], events[50:]
    logs = tmp_path / "logs"
    logs.mkdir()
    # rotated names that sort the wrong way alphabetically
    (logs / "audit.log").write_bytes(orjson.dumps({"kind": "EventList", "apiVersion":
                                                   "audit.k8s.io/v1", "items": new}) + b"\n")
    with gzip.open(logs / "audit-1.log.gz", "wb") as f:
        f.write(b"\n".join(orjson.dumps(e) for e in old) + b"\n")
    records, source = _read(str(logs))
    assert source.bad.total == 0
    assert [r.audit_id for r in records] == [e["auditID"] for e in events]


def test_pretty_printed_document(tmp_path: Path) -> None:
    event = orjson.loads(Path(real("openshift-4.12-small.jsonl")).read_bytes().splitlines()[0])
    path = tmp_path / "one.json"
    path.write_text(json.dumps(event, indent=2))
    records, source = _read(str(path))
    assert [r.audit_id for r in records] == [event["auditID"]] and source.bad.total == 0


def test_bad_lines_are_counted_with_file_and_line(tmp_path: Path) -> None:
    good = Path(real("openshift-4.12-small.jsonl")).read_bytes().splitlines()
    event = orjson.loads(good[0])
    bad_time = {**event, "requestReceivedTimestamp": "not a time"}
    no_id = {k: v for k, v in event.items() if k != "auditID"}
    wrong_type = {**event, "verb": 7}
    lines = [good[0], b"{not json", b"[1, 2]", orjson.dumps({"kind": "Pod"}),
             orjson.dumps(bad_time), orjson.dumps(no_id), orjson.dumps(wrong_type),
             b"", good[1]]
    path = tmp_path / "audit.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    records, source = _read(str(path))
    assert len(records) == 2
    assert source.bad.counts == Counter({
        "invalid_json": 1, "not_an_object": 2, "unknown_kind": 1, "bad_timestamp": 1,
        "missing_field:auditID": 1, "wrong_type:verb": 1,
    })
    assert source.bad.samples["invalid_json"][0].startswith(f"{path}:2")
    assert source.bad.samples["missing_field:auditID"][0].startswith(f"{path}:6")
    assert "wrong_type:verb: 1" in source.bad.report()


def test_missing_file_is_reported_not_raised(tmp_path: Path) -> None:
    records, source = _read(str(tmp_path / "nope.log"))
    assert records == [] and source.bad.counts["unreadable_file"] == 1


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = Path(real("openshift-4.12-small.jsonl")).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    records, _ = _read("-")
    assert len(records) == 5


def _worker(path: str, index: int, workers: int, prescanned: bool) -> list[AuditRecord]:
    """What worker ``index`` of ``workers`` reads: the whole file itself, or the items a
    pre-scan sent it."""
    feed = [batch[index] for batch in Prescan([path], workers)] if prescanned else None
    return list(FileSource([path], partition=Partition(index, workers), feed=feed))


def test_prescan_hands_each_line_to_one_worker_and_its_time_to_the_others() -> None:
    path = str(SAMPLE)
    scan = Prescan([path], 3)
    batches = list(scan)
    with gzip.open(path) as stream:
        lines = stream.read().splitlines()
    assert scan.lines == len(lines) and len(batches) > 10
    owners: dict[int, list[int]] = {}
    ticks = [0, 0, 0]
    for batch in batches:
        for index, items in enumerate(batch):
            for item in items:
                if type(item) is int:
                    ticks[index] += 1
                elif item[0] in ("o", "s", "a"):
                    owners.setdefault(item[1], []).append(index)
    assert sorted(owners) == list(range(1, len(lines) + 1))
    # one worker each, but for the few lines whose bytes do not tell (every worker's)
    assert all(v in ([0], [1], [2], [0, 1, 2]) for v in owners.values())
    assert sum(len(v) == 3 for v in owners.values()) < len(lines) / 100
    assert {v[0] for v in owners.values() if len(v) == 1} == {0, 1, 2}
    finals = sum(b'"stage":"ResponseComplete"' in line for number, line
                 in enumerate(lines, 1) if len(owners[number]) == 1)
    # every worker sees the time of each final line it does not own
    assert sum(ticks) == 2 * finals


@pytest.mark.parametrize("prescanned", [False, True], ids=["reading", "prescanned"])
def test_partition_gives_each_record_to_one_worker_and_each_pod_to_one(
        prescanned: bool) -> None:
    path = str(SAMPLE)
    single = [r for r in FileSource([path]) if r.stage != SKIPPED_STAGE]
    workers = 3
    parts = [_worker(path, k, workers, prescanned) for k in range(workers)]
    decoded = [[r for r in part if r.stage not in (TICK_STAGE, SKIPPED_STAGE)]
               for part in parts]
    # every record decoded exactly once over the workers; every line counted once
    assert sorted((r.audit_id, r.stage) for part in decoded for r in part) == sorted(
        (r.audit_id, r.stage) for r in single)
    assert sum(len(part) for part in parts) - sum(
        r.stage == TICK_STAGE for part in parts for r in part) == len(list(FileSource([path])))

    def pod_of(record: AuditRecord) -> tuple[str, str] | None:
        """Oracle: the Pod a record is about, from its bodies (not from names)."""
        body = record.request or record.response or {}
        if record.resource == "events":
            involved = body.get("involvedObject") or body.get("regarding") or {}
            if involved.get("kind") != "Pod":
                return None
            return record.namespace, involved.get("name", "")
        return record.namespace, record.name or meta(record.response).get("name", "")

    owners: dict[tuple[str, str], set[int]] = {}
    for index, part in enumerate(decoded):
        for record in part:
            if (record.resource == "pods" and record.succeeded) or (
                    record.resource == "events" and record.verb == "create"):
                pod = pod_of(record)
                if pod is not None and pod[1]:
                    owners.setdefault(pod, set()).add(index)
    assert len(owners) > 250
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}
    assert {i for v in owners.values() for i in v} == set(range(workers))  # all busy
    # the other workers' final records still move each worker's clock
    finals = sorted(r.received_us for r in FileSource([path])
                    if r.stage in ("ResponseComplete", "Panic")
                    or (r.stage == SKIPPED_STAGE and r.received_us))
    for part in parts:
        assert sorted(r.received_us for r in part if r.stage == TICK_STAGE or (r.received_us
                      and r.stage in ("ResponseComplete", "Panic", SKIPPED_STAGE))) == finals
