"""Prometheus sink and pipeline-health collector on an injected registry; the OpenMetrics
backfill file; the core imports without the prometheus extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")
from prometheus_client import CollectorRegistry, generate_latest

from lunettes.api.metrics import PipelineCollector
from lunettes.config.errors import ConfigError, Section
from lunettes.model.record import PodRecord, Stage
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError
from lunettes.sinks.openmetrics import OpenMetricsFileSink
from lunettes.sinks.prometheus import PrometheusSink
from lunettes.sources.errors import BadRecords

S = 1_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z


def record(n: int, namespace: str = "shop", result: str = "met", at_s: float = 0,
           total: float = 12.0, platform: float = 4.0, **extra: Any) -> PodRecord:
    created = T0 + round(at_s * S)
    slo = {"result": result, "class": extra.pop("slo_class", "standard"), "total_s": total,
           "platform_s": platform, "user_s": total - platform,
           "delivered": result in ("met", "violated"), "pod_start_sli_s": 2.5}
    r = PodRecord(uid=f"uid-{n}", namespace=namespace, name=f"p{n}", node="n1",
                  created_us=created, finished_us=created + round(total * S),
                  outcome="delivered", last_seen_us=created + round(total * S),
                  stages=[Stage("delivery", "platform", created, created + round(total * S)),
                          Stage("readiness", "user", created + 4 * S, None)])
    r.results["slo"] = slo
    r.results.update(extra)
    return r


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_records_become_counters_and_histograms() -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.export([record(1), record(2, result="violated", platform=90, total=95),
                 record(3, result="not_applicable"),
                 record(4, diagnosis={"reason": "ImageNotFound"}, result="in_progress")])
    results = "lunettes_pod_slo_results_total"
    assert value(registry, results, namespace="shop", slo_class="standard", result="met",
                 reason="none") == 1
    assert value(registry, results, namespace="shop", slo_class="none",
                 result="not_applicable", reason="none") == 1
    assert value(registry, results, namespace="shop", slo_class="standard",
                 result="in_progress", reason="ImageNotFound") == 1
    # delivery histograms only for delivered Pods; platform time is the SLO's measure
    assert value(registry, "lunettes_pod_delivery_duration_seconds_count",
                 slo_class="standard") == 2
    assert value(registry, "lunettes_pod_delivery_platform_duration_seconds_sum",
                 slo_class="standard") == 94
    assert value(registry, "lunettes_pod_delivery_platform_duration_seconds_bucket",
                 slo_class="standard", le="60.0") == 1
    # closed stages only
    assert value(registry, "lunettes_pod_stage_duration_seconds_count", stage="delivery",
                 owner="platform") == 4
    assert value(registry, "lunettes_pod_stage_duration_seconds_count", stage="readiness",
                 owner="user") is None
    assert value(registry, "lunettes_pod_start_sli_duration_seconds_count") == 4
    assert value(registry, "lunettes_pods_total", outcome="delivered") == 4
    text = generate_latest(registry).decode()
    assert "uid-1" not in text and "p1" not in text.replace("lunettes_p", "")  # no per-Pod


def test_cardinality_guard_folds_late_values_into_other() -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, max_namespaces=2, max_classes=1)
    sink.export([record(i, namespace=f"ns{i}", slo_class=f"c{i % 2}") for i in range(5)])
    families = {m.name: m for m in registry.collect()}
    namespaces = {s.labels["namespace"] for s in families["lunettes_pod_slo_results"].samples}
    assert namespaces == {"ns0", "ns1", "other"}
    classes = {s.labels["slo_class"] for s in families["lunettes_pod_slo_results"].samples}
    assert classes == {"c0", "other"}
    assert value(registry, "lunettes_pod_slo_results_total", namespace="other",
                 slo_class="other", result="met", reason="none") == 1  # ns3 (c1)
    assert sink.namespaces.folded == 3


def test_factory_defaults_errors_and_shutdown(tmp_path: Path) -> None:
    problems: list[str] = []
    section = Section({"max_namespace": 3, "max_classes": 0}, "p.yaml: sinks.prometheus",
                      problems)
    PrometheusSink.from_config("prometheus", section, BuildContext(tmp_path))
    assert problems == ["p.yaml: sinks.prometheus.max_classes: must be at least 1",
                        "p.yaml: sinks.prometheus.max_namespace: unknown key "
                        "(did you mean max_namespaces?)"]
    textfile = tmp_path / "lunettes.prom"
    sink = PrometheusSink.from_config("prometheus", Section(
        {"textfile": str(textfile)}, "x", []), BuildContext(tmp_path))
    sink.export([record(1)])
    assert sink.force_flush()
    sink.shutdown()
    sink.shutdown()
    assert 'lunettes_pods_total{outcome="delivered"} 1.0' in textfile.read_text()
    with pytest.raises(SinkClosedError):
        sink.export([record(2)])


def test_pipeline_collector_reads_stats_bad_records_and_the_audit_clock() -> None:
    class Pipeline:
        def __init__(self) -> None:
            self.stats = {"records": 7, "duplicate": 2}
            self.newest_us: int | None = None
            self.pods_in_flight = 3
            self.sources = [SimpleNamespace(name="follow/a", state="following"),
                            SimpleNamespace(name="webhook", state="stalled")]

    bad = BadRecords()
    bad.add("invalid_json", "a.log:3")
    bad.add("invalid_json", "a.log:4")
    registry = CollectorRegistry()
    pipeline = Pipeline()
    registry.register(PipelineCollector(pipeline, bad, clock=lambda: T0 / S + 42.5))
    assert value(registry, "lunettes_audit_records_read_total") == 7
    assert value(registry, "lunettes_audit_duplicate_records_total") == 2
    assert value(registry, "lunettes_audit_bad_records_total", reason="invalid_json") == 2
    assert value(registry, "lunettes_pods_in_flight") == 3
    assert value(registry, "lunettes_audit_lag_seconds") is None  # nothing read yet
    pipeline.newest_us = T0
    assert value(registry, "lunettes_audit_newest_timestamp_seconds") == T0 / S
    assert value(registry, "lunettes_audit_lag_seconds") == 42.5
    assert value(registry, "lunettes_source_state", source="follow/a", state="following") == 1
    assert value(registry, "lunettes_source_state", source="follow/a", state="stalled") == 0
    assert value(registry, "lunettes_source_state", source="webhook", state="stalled") == 1


def test_openmetrics_file_is_cumulative_per_interval_and_backfills(tmp_path: Path) -> None:
    path = tmp_path / "backfill.om"
    sink = OpenMetricsFileSink(path, interval_s=60)
    # finals at 12 s, 70 s, 75 s, then a gap of idle minutes, then 400 s
    sink.export([record(1, at_s=0), record(2, at_s=58, result="violated", platform=70,
                                             total=17)])
    sink.export([record(3, at_s=63), record(4, at_s=388)])
    sink.shutdown()
    sink.shutdown()
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF" and lines.count("# EOF") == 1
    met = [ln for ln in lines if ln.startswith("lunettes_pod_slo_results_total{")
           and 'result="met"' in ln]
    stamps = [int(ln.rsplit(" ", 1)[1]) - T0 // S for ln in met]
    values = [float(ln.rsplit(" ", 2)[1]) for ln in met]
    assert stamps == [60, 120, 180, 240, 300, 360, 420]  # idle minutes are filled
    assert values == [1, 2, 2, 2, 2, 2, 3]
    created = [ln for ln in lines if ln.startswith("lunettes_pod_slo_results_created{")
               and 'result="met"' in ln]
    assert {ln.rsplit(" ", 2)[1] for ln in created} == {str(T0 // S)}  # audit clock
    types = [ln for ln in lines if ln.startswith("# TYPE")]
    assert len(types) == len(set(types))  # each family once
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (.ci/run installs the prometheus package)")
    out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(path),
                          str(tmp_path / "tsdb")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_core_imports_without_the_prometheus_extra(tmp_path: Path) -> None:
    code = """
import sys
sys.modules["prometheus_client"] = None  # as if not installed
import lunettes.pipeline, lunettes.analyzers.slo
from lunettes.cli.main import build_parser
from lunettes import registry
build_parser()
try:
    registry.load(registry.SINKS, "prometheus")
except ImportError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "pip install 'lunettes[prometheus]'" in out.stdout


def test_prometheus_sink_in_pipeline_yaml(tmp_path: Path) -> None:
    from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config

    data = {**load_config(DEFAULT_CONFIG_DIR), "sinks": {"prometheus": {"max_clases": 1}}}
    with pytest.raises(ConfigError, match=r"sinks\.prometheus\.max_clases: unknown key "
                                          r"\(did you mean max_classes\?\)"):
        Pipeline.from_config(DEFAULT_CONFIG_DIR, data)


# -- a backfill file sized by the data ---------------------------------------------------

DAY_S = 86_400


def _bursts(gap_s: int) -> tuple[list[PodRecord], list[PodRecord]]:
    """Two bursts of Pods, ``gap_s`` of audit time apart, of several results and delays."""
    first = [record(n, at_s=n * 13, result=("met", "violated")[n % 2], total=5 + n)
             for n in range(10)]
    second = [record(100 + n, at_s=gap_s + n * 17, result=("met", "killed")[n % 3 == 0],
                     total=3 + 2 * n) for n in range(8)]
    return first, second


def _backfill(tmp: Path, records: list[PodRecord], **options: Any) -> tuple[Path, list[str]]:
    path = tmp / "backfill.om"
    sink = OpenMetricsFileSink(path, interval_s=60, **options)
    sink.export(records)
    sink.shutdown()
    return path, path.read_text().splitlines()


def _stamps(lines: list[str]) -> set[float]:
    return {float(ln.rsplit(" ", 1)[1]) for ln in lines if ln and not ln.startswith("#")}


def test_a_gap_of_months_makes_a_file_sized_by_the_records(tmp_path: Path) -> None:
    first, second = _bursts(gap_s=120 * DAY_S)
    path, lines = _backfill(tmp_path, first + second)
    # Every minute of four months was 172,800 snapshots; now: the bursts and 5 min around.
    snapshots = sorted(_stamps([ln for ln in lines if not ln.startswith(
        "lunettes_pods_created")]))
    assert len(snapshots) <= 2 * (5 + 1) + 2 + 3 + 3
    assert path.stat().st_size < 200_000
    gap = [t for t in snapshots if T0 / S + DAY_S < t < T0 / S + 119 * DAY_S]
    assert gap == []  # nothing to say in the gap, nothing written
    need = shutil.which("promtool") and shutil.which("prometheus")
    if not need:
        pytest.skip("the prometheus package is not installed (.ci/run installs it)")
    from test_serve import prometheus, query, wait_for

    tsdb = _promtool_backfill(path, tmp_path / "tsdb")
    start_b = (T0 + 120 * DAY_S * S) / S
    with prometheus(tmp_path, tsdb=tsdb) as prom:
        end = max(snapshots)
        total = wait_for(lambda: query(prom, "sum(lunettes_pods_total)", end) or None,
                         "the backfilled blocks to load", 30)
        assert total == {"": 18.0}
        # Right before the second burst the counters hold what the first one counted.
        assert query(prom, "sum(lunettes_pods_total)", start_b) == {"": 10.0}
        assert query(prom, "sum(lunettes_pods_total)", T0 / S + 60 * DAY_S) == {}


def test_sparse_and_every_interval_files_answer_alike_at_the_data_times(
        tmp_path: Path) -> None:
    if not (shutil.which("promtool") and shutil.which("prometheus")):
        pytest.skip("the prometheus package is not installed (.ci/run installs it)")
    from test_serve import prometheus, query, wait_for

    first, second = _bursts(gap_s=6 * 3600)
    records = first + second
    dense_dir, sparse_dir = tmp_path / "dense", tmp_path / "sparse"
    dense_dir.mkdir()
    sparse_dir.mkdir()
    dense, dense_lines = _backfill(dense_dir, records, hold_s=10**9)  # every interval
    sparse, sparse_lines = _backfill(sparse_dir, records)
    assert len(_stamps(sparse_lines)) < len(_stamps(dense_lines)) / 10
    # When the records became final, and a little later while their counts change.
    times = sorted({(r.finished_us or 0) / S + later for r in records
                    for later in (0, 30, 90)})
    queries = [
        "sum by (result) (lunettes_pod_slo_results_total)",
        "lunettes_pods_total",
        "sum(rate(lunettes_pod_delivery_duration_seconds_count[5m]))",
        "histogram_quantile(0.5, sum by (le) "
        "(rate(lunettes_pod_delivery_duration_seconds_bucket[5m])))",
        "increase(lunettes_pod_stage_duration_seconds_sum[5m])",
    ]
    answers: dict[str, list[list[dict[str, str]]]] = {}
    for name, path, tmp in (("dense", dense, dense_dir), ("sparse", sparse, sparse_dir)):
        tsdb = _promtool_backfill(path, tmp / "tsdb")
        with prometheus(tmp, tsdb=tsdb) as prom:
            wait_for(lambda prom=prom: query(prom, "sum(lunettes_pods_total)",  # type: ignore
                                             times[-1]) or None, "the blocks to load", 30)
            answers[name] = [[{k: repr(v) for k, v in query(prom, q, t).items()}  # NaN too
                              for t in times] for q in queries]
    assert answers["sparse"] == answers["dense"]
    assert any(answers["sparse"][0])  # the queries did find data


def _promtool_backfill(path: Path, tsdb: Path) -> Path:
    out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(path),
                          str(tsdb)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return tsdb
