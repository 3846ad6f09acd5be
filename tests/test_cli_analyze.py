"""``lunettes analyze apiserver`` on the real perfspec capture: its counts equal counts made
with plain json; the chart is a PNG; a missing extra is named."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from lunettes.cli import analyze
from lunettes.cli.main import main
from tests.realdata import real

PERFSPEC = "perfspec-kubeadm-metadata.jsonl.gz"


def _final_events(path: str) -> list[dict]:
    with gzip.open(path, "rt") as stream:
        events = [json.loads(line) for line in stream]
    return [e for e in events if e["stage"] in ("ResponseComplete", "Panic")]


def _minute(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) // 60


def test_report_counts_on_perfspec_equal_plain_json_counts(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = real(PERFSPEC)
    chart = tmp_path / "load.png"
    code = main(["analyze", "apiserver", path, "--format", "json", "--top", "100000",
                 "--top-k", "100000", "--chart", str(chart)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    events = _final_events(path)
    assert report["requests"] == len(events) == 16089
    minutes = Counter(_minute(e["requestReceivedTimestamp"]) for e in events)
    first = min(minutes)
    assert report["series"]["total"] == [minutes.get(first + i, 0)
                                         for i in range(max(minutes) - first + 1)]
    by_verb = Counter(e["verb"] for e in events)
    assert {t["value"]: t["requests"] for t in report["top"]["verb"]} == dict(by_verb)
    by_user = Counter(e["user"]["username"] for e in events)
    assert {t["value"]: t["requests"] for t in report["top"]["user"]} == dict(by_user)
    by_code = Counter(str(e["responseStatus"]["code"]) for e in events)
    assert {t["value"]: t["requests"] for t in report["top"]["code"]} == dict(by_code)
    unbounded: Counter[str] = Counter()
    for e in events:
        ref, query = e.get("objectRef", {}), e["requestURI"].partition("?")[2]
        params = {p.split("=")[0] for p in query.split("&")}
        if e["verb"] == "list" and "namespace" not in ref and "resource" in ref and \
                not params & {"limit", "resourceVersion"}:
            unbounded[ref["resource"]] += 1
    assert {u["resource"]: u["count"] for u in report["unbounded_lists"]} == dict(unbounded)
    assert sum(unbounded.values()) > 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_report_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "apiserver", real(PERFSPEC)]) == 0
    out = capsys.readouterr().out
    assert "16089 requests" in out
    assert "cluster-wide LISTs without limit or resourceVersion" in out


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(analyze, "missing_extra", lambda: ["statsmodels"])
    assert main(["analyze", "apiserver", real(PERFSPEC)]) == 2
    assert "pip install 'lunettes[analyze]'" in capsys.readouterr().err


def test_bad_where_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "apiserver", real(PERFSPEC), "--where", "colour=red"]) == 2
    assert "DIMENSION=VALUE" in capsys.readouterr().err


def test_delivery_from_store_and_from_logs_count_the_same_pods(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import sqlite3

    sample = str(Path(__file__).resolve().parents[1] / "lunettes/data/sample-audit.jsonl.gz")
    store = tmp_path / "pods.db"
    assert main(["replay", sample, "--store", str(store), "--format", "none"]) == 0
    capsys.readouterr()
    with sqlite3.connect(store) as db:
        rows = [json.loads(r[0]) for r in db.execute("SELECT record FROM pods")]
    delivered = sum(1 for r in rows if r.get("duration_s") is not None and any(
        s.get("duration_s") is not None and s["name"] != "delivery" for s in r["stages"]))
    assert main(["analyze", "delivery", "--store", str(store), "--format", "json"]) == 0
    from_store = json.loads(capsys.readouterr().out)
    assert from_store["pods"] == delivered > 0
    assert main(["analyze", "delivery", sample, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["pods"] == delivered
    assert main(["analyze", "delivery", sample, "--store", str(store)]) == 2


GKE = "gke-cloud-logging"


def test_cloud_logging_yaml_counts_equal_plain_yaml_counts(
        capsys: pytest.CaptureFixture[str]) -> None:
    """GKE's Cloud Logging export (YAML protoPayload entries) is read as replay reads it;
    its requests, verbs, users, clients and codes are the entries' own, read with PyYAML."""
    files = sorted(Path(real(GKE)).glob("container_recorder_*.yaml"))
    entries = [yaml.safe_load(path.read_text()) for path in files]
    assert len(entries) == 3
    code = main(["analyze", "apiserver", *map(str, files), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["requests"] == len(entries) and report["bad_records"] == 0
    payloads = [e["protoPayload"] for e in entries]
    by_verb = Counter(p["methodName"].rsplit(".", 1)[1] for p in payloads)
    assert {t["value"]: t["requests"] for t in report["top"]["verb"]} == dict(by_verb) == {
        "create": 1, "patch": 2}
    by_user = Counter(p["authenticationInfo"]["principalEmail"] for p in payloads)
    assert {t["value"]: t["requests"] for t in report["top"]["user"]} == dict(by_user)
    agents = Counter(p["requestMetadata"]["callerSuppliedUserAgent"].split("/")[0]
                     for p in payloads)
    clients = {t["value"]: t["requests"] for t in report["top"]["user_agent"]}
    assert {c.split("/")[0]: n for c, n in clients.items()} == dict(agents)
    assert clients["kube-controller-manager/replicaset-controller"] == 1
    # google.rpc code 0 (OK) is HTTP 200, 201 for a create
    assert {t["value"]: t["requests"] for t in report["top"]["code"]} == {"201": 1, "200": 2}
    resources = Counter(p["resourceName"].split("/")[4] for p in payloads)
    assert sum(t["requests"] for t in report["top"]["resource"]) == sum(resources.values())


def test_logs_spanning_too_many_intervals_are_refused_with_the_fix(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The directory holds GKE entries of 2024-01-01 and an event of 2025-04-01: over
    100,000 one-minute intervals apart. The command says so and names --interval."""
    assert main(["analyze", "apiserver", real(GKE)]) == 2
    err = capsys.readouterr().err
    assert "more than 100000" in err and "--interval" in err
    assert main(["analyze", "apiserver", real(GKE), "--interval", "86400", "--format",
                 "json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 4
