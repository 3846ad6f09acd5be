"""lunettes simulate: shapes against real captures, determinism, truth, disorder, outputs."""

from __future__ import annotations

import glob
import gzip
import itertools
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from realdata import REAL, real

from lunettes.cli.main import main
from lunettes.simulate import SCENARIOS, SimConfig, Simulation
from lunettes.simulate.scheduler import UNSCHEDULABLE, failed_scheduling_message
from lunettes.simulate.truth import Mark, expected_stages

POLICIES = ("requestresponse", "gke", "metadata")
ALL = {name: 1.0 for name in SCENARIOS}


def _simulate(**kw: Any) -> tuple[list[tuple[int, bytes]], list[dict[str, Any]]]:
    kw.setdefault("pods", 2 * len(SCENARIOS))
    kw.setdefault("scenarios", ALL)
    kw.setdefault("rate", 5.0)
    sim = Simulation(SimConfig(**kw))
    lines = list(sim.lines())
    return lines, sim.truth_rows()


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    out = {}
    for policy in POLICIES:
        lines, truth = _simulate(policy=policy, seed=3)
        out[policy] = ([json.loads(line) for _, line in lines], truth)
    return out


# -- real captures --------------------------------------------------------------------------
def _kind(e: dict[str, Any]) -> tuple[str, str, str]:
    ref = e.get("objectRef") or {}
    return e.get("verb", ""), ref.get("resource", ""), ref.get("subresource", "")


@pytest.fixture(scope="module")
def real_events() -> list[dict[str, Any]]:
    events = []
    for name in ("openshift-4.12-requestresponse.jsonl", "openshift-4.12-small.jsonl"):
        events += [json.loads(x) for x in Path(real(name)).read_text().splitlines()]
    with gzip.open(real("perfspec-kubeadm-metadata.jsonl.gz"), "rt") as fh:
        events += [json.loads(x) for x in fh]
    for path in sorted(glob.glob(str(REAL / "falco-v1beta1" / "*.json"))):
        events.append(json.loads(Path(path).read_text()))
    return events


# perfspec's CSV capture dropped these (PROVENANCE.md names the first three; it has no
# annotations either); the other real events carry them
DROPPED_BY_CAPTURE = {"stageTimestamp", "userAgent", "sourceIPs", "annotations"}
BODIES = {"requestObject", "responseObject"}


def _union(events: list[dict[str, Any]], key: str | None = None) -> dict[str, set[type]]:
    types: dict[str, set[type]] = defaultdict(set)
    for e in events:
        obj = e if key is None else e.get(key)
        if isinstance(obj, dict):
            for k, v in obj.items():
                types[k].add(type(v))
    return types


def _check_subset(sim: dict[str, Any], allowed: dict[str, set[type]], what: str,
                  extra: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    for k, v in sim.items():
        if k in extra:
            continue
        assert k in allowed, f"{what}: key {k!r} never seen in real events"
        if v is None:
            continue
        assert type(v) in allowed[k] or (type(v) is int and float in allowed[k]), \
            f"{what}: {k!r} is {type(v).__name__}, real has {allowed[k]}"


KINDS = [("create", "pods", ""), ("patch", "pods", "status"), ("create", "pods", "binding"),
         ("create", "events", ""), ("patch", "events", ""), ("delete", "pods", ""),
         ("update", "leases", ""), ("watch", "configmaps", ""), ("get", "configmaps", "")]


@pytest.mark.parametrize("policy", POLICIES)
def test_records_have_real_shapes(runs, real_events, policy: str) -> None:
    events, _ = runs[policy]
    real_by_kind = defaultdict(list)
    for e in real_events:
        real_by_kind[_kind(e)].append(e)
    v1 = [e for e in real_events if e.get("apiVersion") == "audit.k8s.io/v1"]
    any_types = _union(v1)
    users, refs, statuses = _union(v1, "user"), _union(v1, "objectRef"), \
        _union(v1, "responseStatus")
    allowed_by_kind = {}
    for kind in KINDS:
        same = real_by_kind[kind]
        assert same, f"no real {kind}"
        allowed = _union(same)
        for k in DROPPED_BY_CAPTURE | BODIES:
            if k not in allowed and k in any_types:
                allowed[k] = any_types[k]
        allowed_by_kind[kind] = allowed
    seen = Counter()
    for e in events:
        kind = _kind(e)
        if kind not in allowed_by_kind:
            continue
        seen[kind] += 1
        _check_subset(e, allowed_by_kind[kind], f"{policy} {kind}")
        _check_subset(e["user"], users, f"{policy} {kind} user")
        _check_subset(e["objectRef"], refs, f"{policy} {kind} objectRef")
        _check_subset(e["responseStatus"], statuses, f"{policy} {kind} responseStatus")
        assert e["requestReceivedTimestamp"].endswith("Z")
        assert len(e["requestReceivedTimestamp"]) == 27
        assert e["stageTimestamp"] >= e["requestReceivedTimestamp"]
        if policy == "metadata":
            assert not BODIES & set(e), e
        if e["objectRef"].get("apiGroup") == "":
            raise AssertionError("core objectRefs omit apiGroup")
    for kind in KINDS[:5]:
        assert seen[kind], f"{policy}: no simulated {kind}"


def test_pod_create_bodies_match_real(runs, real_events) -> None:
    events, _ = runs["requestresponse"]
    real_pods = [o for e in real_events for o in (e.get("requestObject"),
                                                 e.get("responseObject"))
                 if isinstance(o, dict) and o.get("kind") == "Pod"]
    meta = _union([{"m": p["metadata"]} for p in real_pods], "m")
    spec = _union([{"s": p["spec"]} for p in real_pods], "s")
    containers = _union([{"c": c} for p in real_pods for c in p["spec"]["containers"]], "c")
    status = _union([{"s": p.get("status", {})} for p in real_pods], "s")
    creates = [e for e in events if _kind(e) == ("create", "pods", "")]
    ok = [e for e in creates if e["responseStatus"]["code"] == 201]
    assert ok
    for e in ok:
        for body in (e["requestObject"], e["responseObject"]):
            assert set(body) == {"kind", "apiVersion", "metadata", "spec", "status"}
            _check_subset(body["metadata"], meta, "pod metadata")
            _check_subset(body["spec"], spec, "pod spec", {"readinessGates"})
            for c in body["spec"]["containers"]:
                _check_subset(c, containers, "container")
        _check_subset(e["responseObject"]["status"], status, "pod status")
        assert "name" in e["responseObject"]["metadata"]
        assert "uid" in e["responseObject"]["metadata"]
        if "generateName" in e["requestObject"]["metadata"]:
            assert "name" not in e["objectRef"]
            assert "name" not in e["requestObject"]["metadata"]
    # rejections look like the OpenShift PodSecurity 403
    shape = next(e for e in real_events if _kind(e) == ("create", "pods", "")
                 and e["responseStatus"]["code"] == 403 and "details" in e["responseStatus"])
    pss = [e for e in creates if "violates PodSecurity" in
           e["responseStatus"].get("message", "")]
    assert pss
    for e in pss:
        assert set(e["responseStatus"]) == set(shape["responseStatus"])
        assert set(e["responseObject"]) == set(shape["responseObject"])
        assert e["responseStatus"]["message"].startswith(
            f'pods "{e["responseStatus"]["details"]["name"]}" is forbidden: violates '
            'PodSecurity "baseline:')
        assert "pod-security.kubernetes.io/enforce-policy" in e["annotations"]


def _gke_patches() -> list[dict[str, Any]]:
    out = []
    for path in sorted(glob.glob(str(REAL / "gke-cloud-logging" / "container_recorder*.yaml"))):
        doc = yaml.safe_load(Path(path).read_text())
        payload = doc.get("protoPayload", {})
        if payload.get("methodName") == "io.k8s.core.v1.pods.status.patch":
            out.append(payload["request"])
    return out


@pytest.mark.parametrize("policy", ["requestresponse", "gke"])
def test_status_patch_bodies_match_gke(runs, policy: str) -> None:
    real(f"gke-cloud-logging{'/'}container_recorder_test_1_2.yaml")
    gke = _gke_patches()
    assert gke
    status_keys = set().union(*(p["status"] for p in gke))
    cond_keys = set().union(*(c for p in gke for c in p["status"].get("conditions", [])))
    cs_keys = set().union(*(c for p in gke for c in p["status"].get("containerStatuses", [])))
    events, _ = runs[policy]
    patches = [e for e in events if _kind(e) == ("patch", "pods", "status")
               and e["user"]["username"].startswith("system:node:")]
    assert patches
    extra_status = {"initContainerStatuses", "phase", "podIP", "podIPs", "hostIP", "hostIPs",
                    "startTime", "message", "reason"}
    for e in patches:
        body = e["requestObject"]
        assert set(body) == {"metadata", "status"}
        assert set(body["metadata"]) == {"uid"}
        assert set(body["status"]) <= status_keys | extra_status
        assert "$setElementOrder/conditions" in body["status"] or "phase" in body["status"]
        for c in body["status"].get("conditions", []):
            assert set(c) <= cond_keys | {"lastProbeTime"}, c
            assert {"type", "status", "lastTransitionTime"} <= set(c)
        for cs in body["status"].get("containerStatuses", []):
            assert set(cs) <= cs_keys and {"name", "state", "ready", "restartCount"} <= set(cs)
            (state, _detail), = cs["state"].items()
            assert state in ("waiting", "running", "terminated")
        if policy == "gke":
            assert "responseObject" not in e
        else:
            assert e["responseObject"]["kind"] == "Pod"
            assert e["responseObject"]["metadata"]["uid"] == body["metadata"]["uid"]


def test_events_and_bindings_match_real(runs) -> None:
    events, _ = runs["requestresponse"]
    kubelet_events = [e for e in events if _kind(e) == ("create", "events", "")
                      and e["user"]["username"].startswith("system:node:")]
    assert kubelet_events
    for e in kubelet_events:
        body = e["requestObject"]
        assert body["apiVersion"] == "v1" and body["kind"] == "Event"
        assert e["objectRef"]["name"] == body["metadata"]["name"]
        pod, _, suffix = body["metadata"]["name"].rpartition(".")
        assert pod == body["involvedObject"]["name"] and len(suffix) == 16
        int(suffix, 16)
        assert body["source"]["component"] == "kubelet" == body["reportingComponent"]
        assert body["source"]["host"] == body["reportingInstance"]
        assert body["involvedObject"]["kind"] == "Pod"
        assert body["count"] == 1 and body["firstTimestamp"] == body["lastTimestamp"]
    patches = [e for e in events if _kind(e) == ("patch", "events", "")
               and e["objectRef"].get("apiGroup") is None]
    assert patches
    for e in patches:
        assert set(e["requestObject"]) == {"count", "lastTimestamp", "message"}
        assert e["responseObject"]["count"] == e["requestObject"]["count"] > 1
    bindings = [e for e in events if _kind(e) == ("create", "pods", "binding")]
    assert bindings
    for e in bindings:
        assert e["user"]["username"] == "system:kube-scheduler"
        assert e["userAgent"].startswith("kube-scheduler/v1.30.")
        assert e["userAgent"].endswith("/scheduler")
        assert e["requestObject"]["kind"] == "Binding"
        assert e["requestObject"]["target"]["kind"] == "Node"
        assert e["responseStatus"]["code"] == 201
    texts = {e["requestObject"]["message"] for e in kubelet_events}
    assert any(t.startswith("Successfully pulled image ") and "including waiting). Image "
               "size: " in t for t in texts)
    assert any("already present on machine" in t for t in texts)
    assert any(t.startswith("Created container: ") for t in texts)
    assert any(t.startswith("Created container ") and ":" not in t for t in texts)
    assert any(t.startswith("Back-off restarting failed container ") for t in texts)
    scheduler = [e["requestObject"] for e in events if e["objectRef"].get("apiGroup") ==
                 "events.k8s.io" and e["verb"] == "create"]
    assert {"Scheduled", "FailedScheduling"} <= {b["reason"] for b in scheduler}


def test_failed_scheduling_message_format() -> None:
    msg = failed_scheduling_message("cpu", 3, 2)
    assert msg == (
        "0/5 nodes are available: 2 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu. preemption: 0/5 "
        "nodes are available: 2 Preemption is not helpful for scheduling, 3 No preemption "
        "victims found for incoming pod.")
    for cause in UNSCHEDULABLE:
        assert failed_scheduling_message(cause, 5).startswith("0/5 nodes are available: ")


# -- truth ----------------------------------------------------------------------------------
EXPECTED_OUTCOME = {
    "healthy": {"delivered", "completed"}, "admission_denied": {"rejected"},
    "quota_exceeded": {"rejected"}, "invalid_spec": {"rejected"},
    "apiserver_error": {"rejected"}, "evicted": {"failed"},
    "kubelet_admission_rejected": {"failed"}, "deleted_before_ready": {"deleted"},
    "preempted": {"deleted"}, "node_not_ready": {"deleted"},
    "crash_loop": {"timeout", "failed"}, "image_not_found": {"timeout"},
    "unschedulable_cpu": {"timeout"}, "readiness_probe_failed": {"timeout"},
    "scheduling_slow": {"delivered", "completed"},
    "image_pull_backoff": {"delivered", "completed"},
    "network_not_ready": {"delivered", "completed"},
}


@pytest.mark.parametrize("policy", POLICIES)
def test_truth_covers_every_scenario(runs, policy: str) -> None:
    _, truth = runs[policy]
    by_scenario = defaultdict(list)
    for row in truth:
        assert set(row) == {"uid", "namespace", "name", "scenario", "workload", "node",
                            "created", "outcome", "reason", "policy", "stages"}
        assert row["policy"] == policy
        by_scenario[row["scenario"]].append(row)
    assert set(by_scenario) == set(SCENARIOS)
    for name, rows in by_scenario.items():
        for row in rows:
            assert row["reason"] == SCENARIOS[name].reason
            if name in EXPECTED_OUTCOME:
                assert row["outcome"] in EXPECTED_OUTCOME[name], (name, row["outcome"])
    assert len({row["uid"] for row in truth}) == len(truth)


def _pod_records(events: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict]]:
    """Records about each Pod (by namespace/name): pod requests and Events about it."""
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in events:
        ref = e.get("objectRef") or {}
        if e["stage"] != "ResponseComplete":
            continue
        if ref.get("resource") == "pods" and ref.get("name"):
            out[(ref["namespace"], ref["name"])].append(e)
        elif ref.get("resource") == "pods" and e["verb"] == "create":
            body = e.get("responseObject") or {}
            name = (body.get("metadata") or {}).get("name") or \
                (e["responseStatus"].get("details") or {}).get("name")
            if name:
                out[(ref["namespace"], name)].append(e)
        elif ref.get("resource") == "events" and ref.get("name"):
            pod = ref["name"].rpartition(".")[0]
            out[(ref["namespace"], pod)].append(e)
    return out


def test_truth_stage_times_are_records_of_that_pod(runs) -> None:
    events, truth = runs["requestresponse"]
    records = _pod_records(events)
    checked = 0
    by_id = {e["auditID"]: e for e in events}
    for row in truth:
        if row["outcome"] == "rejected":
            create = by_id[row["uid"]]
            assert create["responseStatus"]["code"] >= 400
            assert create["requestReceivedTimestamp"] == row["created"]
            meta = create["requestObject"]["metadata"]
            assert row["name"] in create["responseStatus"]["message"] or \
                row["name"] in (meta.get("generateName"), meta.get("name"))
            continue
        mine = records[(row["namespace"], row["name"])]
        times = {e["requestReceivedTimestamp"] for e in mine}
        assert row["created"] in times
        # one Pod's records never share a timestamp
        assert len(times) == len(mine)
        for stage in row["stages"]:
            assert stage["start"] in times, (row["scenario"], stage)
            assert stage["end"] is None or stage["end"] in times, (row["scenario"], stage)
            assert stage["end"] is None or stage["end"] >= stage["start"]
            checked += 1
        ends = {s["name"]: s for s in row["stages"]}
        if row["outcome"] == "delivered":
            end = ends["delivery"]["end"]
            ready = next(e for e in mine if e["requestReceivedTimestamp"] == end)
            conds = {c["type"]: c["status"]
                     for c in ready["requestObject"]["status"].get("conditions", [])}
            assert conds.get("Ready") == "True"
        if "scheduling" in ends and ends["scheduling"]["end"]:
            bind = [e for e in mine if e["requestReceivedTimestamp"] == ends["scheduling"]["end"]]
            assert bind[0]["objectRef"].get("subresource") == "binding"
    assert checked > 300


def test_truth_per_policy_lists_only_readable_stages(runs) -> None:
    names = {p: Counter(s["name"] for r in runs[p][1] for s in r["stages"]) for p in POLICIES}
    assert names["requestresponse"]["image_pull"] and names["requestresponse"]["container_create"]
    assert not names["gke"]["container_create"]
    # without Events only pulls that failed first are seen (from the ErrImagePull report)
    pulls = [r["scenario"] for r in runs["gke"][1] for s in r["stages"]
             if s["name"] == "image_pull"]
    assert pulls and set(pulls) <= {"image_not_found", "image_pull_auth",
                                    "image_pull_failed", "image_pull_backoff"}
    assert names["gke"]["readiness"] and names["gke"]["sandbox"]
    assert set(names["metadata"]) <= {"delivery", "scheduling", "kubelet_pickup", "sandbox"}
    for row in runs["metadata"][1]:
        for s in row["stages"]:
            if s["name"] in ("delivery", "sandbox"):
                assert s["end"] is None
    gke_events = [e for e in runs["gke"][0] if _kind(e)[1] == "events"
                  and e["objectRef"].get("apiGroup") is None]
    assert not gke_events


# -- determinism, outputs, disorder ---------------------------------------------------------
def _cli(tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    assert main(["simulate", "-q", "--pods", "30", "--rate", "5", "--scenarios", "all",
                 "-o", str(out), *args]) == 0
    return out


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = _cli(tmp_path, "a.jsonl.gz", "--seed", "7", "--truth", str(tmp_path / "ta.jsonl"))
    b = _cli(tmp_path, "b.jsonl.gz", "--seed", "7", "--truth", str(tmp_path / "tb.jsonl"))
    c = _cli(tmp_path, "c.jsonl.gz", "--seed", "8")
    assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "ta.jsonl").read_bytes() == (tmp_path / "tb.jsonl").read_bytes()
    assert a.read_bytes() != c.read_bytes()
    with gzip.open(a, "rt") as fh:
        lines = [json.loads(x) for x in fh]
    assert all(e["kind"] == "Event" and e["apiVersion"] == "audit.k8s.io/v1" for e in lines)


def test_eventlist_and_stdout(tmp_path: Path, capsysbinary) -> None:
    out = _cli(tmp_path, "list.jsonl", "--eventlist", "50")
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(d["kind"] == "EventList" and d["apiVersion"] == "audit.k8s.io/v1"
               and d["metadata"] == {} for d in docs)
    assert all(len(d["items"]) == 50 for d in docs[:-1]) and 0 < len(docs[-1]["items"]) <= 50
    plain = _cli(tmp_path, "plain.jsonl")
    items = [i for d in docs for i in d["items"]]
    assert items == [json.loads(x) for x in plain.read_text().splitlines()]
    capsysbinary.readouterr()
    assert main(["simulate", "-q", "--pods", "5", "--rate", "2", "--duration", "30"]) == 0
    stdout = capsysbinary.readouterr().out.decode().splitlines()
    assert stdout and all(json.loads(x)["kind"] == "Event" for x in stdout)


def test_duplicates_and_request_received() -> None:
    lines, _ = _simulate(pods=20, duplicates=0.05, request_received=0.3)
    raw = [line for _, line in lines]
    dup = [line for line, n in Counter(raw).items() if n > 1]
    assert dup and all(Counter(raw)[line] == 2 for line in dup)
    events = [json.loads(x) for x in raw]
    received = [e for e in events if e["stage"] == "RequestReceived"]
    assert received
    ids = {e["auditID"] for e in events if e["stage"] == "ResponseComplete"}
    for e in received:
        assert "responseStatus" not in e and "responseObject" not in e
        assert "requestObject" not in e
        assert e["stageTimestamp"] == e["requestReceivedTimestamp"]
        assert e["auditID"] in ids
    stages = Counter(e["stage"] for e in events)
    assert stages["ResponseStarted"] and stages["ResponseComplete"]
    clean, _ = _simulate(pods=20)
    raw = [line for _, line in clean]
    assert len(set(raw)) == len(raw)
    assert not any(b'"RequestReceived"' in line for line in raw)


def test_several_apiservers_interleave_out_of_order() -> None:
    lines, _ = _simulate(pods=40, apiservers=3, skew_s=2.0)
    per_server: dict[int, list[str]] = defaultdict(list)
    merged = []
    for server, line in lines:
        stamp = json.loads(line)["stageTimestamp"]
        per_server[server].append(stamp)
        merged.append(stamp)
    assert len(per_server) == 3
    for stamps in per_server.values():
        assert stamps == sorted(stamps)
    inversions = sum(1 for a, b in itertools.pairwise(merged) if b < a)
    assert inversions > 10
    assert max(_seconds(a) - _seconds(b) for a, b in itertools.pairwise(merged)
               ) <= 2.5

    single, _ = _simulate(pods=40)
    stamps = [json.loads(line)["stageTimestamp"] for _, line in single]
    assert stamps == sorted(stamps)


def _seconds(stamp: str) -> float:
    from lunettes.simulate.clock import parse_start

    return parse_start(stamp) / 1e6


def test_end_cuts_log_and_marks_in_progress() -> None:
    lines, truth = _simulate(pods=30, duration_s=120, end_s=60,
                             scenarios={"healthy": 1, "slow_image_pull": 1})
    stamps = [json.loads(line)["stageTimestamp"] for _, line in lines]
    assert max(stamps) <= "2026-01-01T00:01:00.000000Z"
    assert all(r["created"] <= "2026-01-01T00:01:00.000000Z" for r in truth)
    assert "in_progress" in {r["outcome"] for r in truth}


def test_list_scenarios(capsys) -> None:
    assert main(["simulate", "--list-scenarios"]) == 0
    out = capsys.readouterr().out
    for name, scenario in SCENARIOS.items():
        assert name in out and (scenario.reason or "-") in out


def test_bad_mix_is_an_error(capsys) -> None:
    assert main(["simulate", "--scenarios", "nope=1"]) == 2
    assert "unknown scenario" in capsys.readouterr().err


def test_bundled_sample_is_reproducible(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[1] / "lunettes" / "data"
    readme = (data / "README.md").read_text()
    command = readme.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ").split()
    assert command[:2] == ["lunettes", "simulate"]
    args = command[2:]
    args[args.index("-o") + 1] = str(tmp_path / "audit.jsonl.gz")
    args[args.index("--truth") + 1] = str(tmp_path / "truth.jsonl")
    assert main(["simulate", "-q", *args]) == 0
    assert (tmp_path / "audit.jsonl.gz").read_bytes() == \
        (data / "sample-audit.jsonl.gz").read_bytes()
    assert (tmp_path / "truth.jsonl").read_bytes() == (data / "sample-truth.jsonl").read_bytes()
    assert (data / "sample-audit.jsonl.gz").stat().st_size < 5_000_000
    rows = [json.loads(x) for x in (data / "sample-truth.jsonl").read_text().splitlines()]
    assert len(rows) == 300 and {r["scenario"] for r in rows} == set(SCENARIOS)


def test_expected_stages_are_read_from_the_simulators_marks() -> None:
    """A stage runs from its first start mark to the first end mark at or after it, per
    instance; readiness starts when the last container first started; a Pod whose create
    was not readable starts its root when it was first seen."""
    s = 1_000_000
    marks = [Mark(0, "delivery", "start"), Mark(0, "scheduling", "start"),
             Mark(2 * s, "scheduling", "end"),
             Mark(3 * s, "image_pull", "start", "a:1"), Mark(4 * s, "image_pull", "start", "b:1"),
             Mark(5 * s, "image_pull", "end", "a:1"),
             Mark(6 * s, "readiness", "start", "", "a"), Mark(7 * s, "readiness", "start", "", "b"),
             Mark(8 * s, "readiness", "start", "", "a"),  # a restart: not a first start
             Mark(9 * s, "readiness", "end"), Mark(10 * s, "delivery", "end")]
    got = {(x["name"], x["instance"]): (x["start"], x["end"])
           for x in expected_stages(marks, 0)}
    assert got == {
        ("delivery", ""): ("1970-01-01T00:00:00.000000Z", "1970-01-01T00:00:10.000000Z"),
        ("scheduling", ""): ("1970-01-01T00:00:00.000000Z", "1970-01-01T00:00:02.000000Z"),
        ("image_pull", "a:1"): ("1970-01-01T00:00:03.000000Z", "1970-01-01T00:00:05.000000Z"),
        ("image_pull", "b:1"): ("1970-01-01T00:00:04.000000Z", None),
        ("readiness", ""): ("1970-01-01T00:00:07.000000Z", "1970-01-01T00:00:09.000000Z")}
    partial = expected_stages([Mark(5 * s, "sandbox", "start")], 4 * s)
    assert [(x["name"], x["start"], x["end"]) for x in partial] == [
        ("delivery", "1970-01-01T00:00:04.000000Z", None),
        ("sandbox", "1970-01-01T00:00:05.000000Z", None)]
