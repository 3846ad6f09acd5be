"""The benchmark script must not rot: a smoke run at 10^4 events, checked for its shape.

No timing is asserted (CI machines vary); the numbers must exist and be sane: positive
rates, a replay slower than its parsing floor, memory figures, every pod accounted for.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("bench")
    out, docs = work / "results.json", work / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- results:begin -->\nSTALE-RESULTS\n"
                    "<!-- results:end -->\n\nafter\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--cache", str(work / "cache"),
         "--out", str(out), "--docs", str(docs), "--workers", "2"],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    data["_docs"] = docs.read_text()
    return data


def test_machine_and_command(results: dict) -> None:
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["ram_bytes"] > 0
    assert machine["python"] and machine["cpu"]
    assert "--quick" in results["command"]


def test_throughput_against_the_floor(results: dict) -> None:
    for group in ("sizes", "metadata", "pods_only"):
        (row,) = results[group].values()
        assert row["events"] == 10_000
        assert row["floor_events_per_s"] > 0 and row["replay_events_per_s"] > 0
        assert 0 < row["ratio_to_floor"] < 1.5  # the floor is a floor
        assert row["peak_rss"] > 10 * 2**20
        assert row["pods"] > 0
        assert row["replay"]["bad"] == 0
    rr = results["sizes"]["10000"]
    assert rr["decode"]["records"] <= rr["decode"]["lines"] == 10_000
    assert rr["pipeline"]["pods"] == rr["replay"]["pods"]
    # every span of every pod reached the OTLP receiver
    assert rr["replay"]["otlp"]["spans"] >= rr["replay"]["pods"]


def test_memory_per_pod_in_flight(results: dict) -> None:
    inflight = results["inflight"]
    assert inflight["pods_in_flight"] >= 1000
    assert inflight["pods_finished"] == 0
    assert 0 < inflight["bytes_per_pod"] < 64 * 1024
    assert inflight["bytes_per_hyperevent"] > 0


def test_profile_and_workers(results: dict) -> None:
    top = results["profile"]["top"]
    assert top and all(r["tottime"] >= 0 and r["calls"] > 0 for r in top)
    runs = {r["workers"]: r for r in results["workers"]["runs"]}
    assert set(runs) == {1, 2}
    # partitioned by namespace, the workers together write every Pod exactly once
    assert runs[1]["pods"] == runs[2]["pods"] == results["sizes"]["10000"]["pods"]
    assert runs[2]["records"] == runs[1]["records"]
    assert runs[2]["otlp"]["spans"] == runs[1]["otlp"]["spans"]
    # CPU of each process, for the projection to more cores
    assert len(runs[2]["workers_cpu_seconds"]) == 2
    assert all(c > 0 for c in runs[2]["workers_cpu_seconds"])
    assert runs[2]["prescan_cpu_seconds"] > 0 and runs[2]["projected_speedup"] > 0


def test_verdict_and_docs(results: dict) -> None:
    assert set(results["verdict"]) == {
        "ratio_to_floor_met", "ratio_to_floor_all_pod_log_met", "workers_2_speedup_met",
        "bytes_per_inflight_pod_met", "linear_time", "flat_memory_for_finished_pods"}
    docs = results["_docs"]
    assert docs.startswith("# Benchmarks") and docs.rstrip().endswith("after")
    assert "STALE-RESULTS" not in docs and "events/s" in docs and "Workers" in docs


def test_the_breakdown_adds_the_pipeline_part_by_part(tmp_path: Path) -> None:
    """benchmarks/breakdown.py runs every part on a log and prints one row per part, each
    part's cost including those above it (CPU seconds: no valgrind needed)."""
    log = tmp_path / "sample.jsonl"
    log.write_bytes(gzip.decompress((ROOT / "lunettes/data/sample-audit.jsonl.gz").read_bytes()))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "breakdown.py"), str(log), "--cpu",
         "--lines", "3000"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: [float(x.rstrip("%")) for x in line.split()[1:]]
            for line in done.stdout.splitlines()[2:8]}
    assert list(rows) == ["floor", "source", "chain", "fold", "analyzers", "store"]
    assert rows["floor"][-2] == 1.0  # in floors
    assert rows["store"][0] > rows["floor"][0]
    assert abs(sum(row[2] for part, row in rows.items() if part != "floor") - 100) < 0.5
    assert "3,000 lines" in done.stdout.splitlines()[0]
    ratio = float(done.stdout.splitlines()[-1].rsplit(" ", 1)[1])
    assert 0 < ratio < 1
