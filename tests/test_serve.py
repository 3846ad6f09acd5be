"""``lunettes serve`` and the metrics it serves, checked by a real Prometheus.

Every server here listens on 127.0.0.1 on a free port; waits poll a condition with a
bounded deadline, never sleep for a fixed time.
"""

from __future__ import annotations

import gzip
import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
import httpx
from api_server import SAMPLE, wait_for
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from lunettes.api.app import ServeState, create_app
from lunettes.cli.main import main
from lunettes.model.audit import FOLDED_VERBS
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sinks.memory import InMemorySink
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource
from lunettes.sources.follow import FollowSource


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the app itself ------------------------------------------------------------------------

def test_app_metrics_health_and_readiness() -> None:
    registry = CollectorRegistry()
    PromCounter("demo_things", "Things.", registry=registry).inc(3)
    state = ServeState()
    client = TestClient(create_app(registry, state))
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").json() == {"phase": "starting", "ready": False}
    plain = client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "demo_things_total 3.0" in plain.text
    om = client.get("/metrics", headers={"Accept": "application/openmetrics-text; "
                                                   "version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    state.phase = "done"
    state.ready.set()
    assert client.get("/readyz").status_code == 200
    state.phase, state.error = "failed", "OSError: gone"
    assert client.get("/healthz").status_code == 500
    assert client.get("/readyz").json()["error"] == "OSError: gone"


def test_follow_source_reads_lines_as_they_are_appended(tmp_path: Path) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)[:40]
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines[:10]) + lines[10][:25])  # ends mid-line
    stop, caught_up = threading.Event(), threading.Event()
    bad = BadRecords()
    source = FollowSource([str(log)], stop, poll_s=0.01, bad=bad, on_caught_up=caught_up.set)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(r.audit_id for r in source))
    reader.start()
    try:
        wait_for(caught_up.is_set, "the first pass", 10)
        assert len(got) == 10
        with log.open("ab") as out:
            out.write(lines[10][25:] + b"".join(lines[11:40]) + b"not json\n")
        wait_for(lambda: len(got) == 40, "appended lines", 10)
        assert bad.counts == {"invalid_json": 1}
        assert bad.samples["invalid_json"][0].startswith(f"{log}:41")
    finally:
        stop.set()
        reader.join(10)
    assert not reader.is_alive()
    # records about Pods decoded, the others counted undecoded (no audit ID), all in order
    events = [orjson.loads(line) for line in lines]
    expected = [e["auditID"] if e["verb"] in FOLDED_VERBS.get(e["objectRef"]["resource"], ())
                else "" for e in events]
    assert got == expected and "" in got and len(set(got)) > 1
    with pytest.raises(ValueError, match="plain files only"):
        FollowSource([str(SAMPLE)], stop)


# -- the real thing: lunettes serve scraped by Prometheus ---------------------------------

@contextmanager
def process(args: list[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def lunettes_serve(paths: list[str], tmp: Path, *extra: str) -> Iterator[str]:
    """A ``lunettes serve`` subprocess on a free port; yields its base URL."""
    log = tmp / "serve.log"
    with process([sys.executable, "-m", "lunettes.cli.main", "serve", "--no-store",
                  "--port", "0", *extra, *paths], log, tmp) as proc:
        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics",
                              log.read_text())
            return found[1] if found else None

        yield wait_for(listening, "lunettes serve to listen", 30)


def need_prometheus() -> None:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("the prometheus package is not installed (.ci/run installs it)")


@contextmanager
def prometheus(tmp: Path, target: str = "", tsdb: Path | None = None,
               *flags: str) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping ``target`` every second; yields its URL."""
    need_prometheus()
    config = tmp / "prometheus.yml"
    scrape = (f"scrape_configs:\n  - job_name: lunettes\n    static_configs:\n"
              f"      - targets: ['{target}']\n" if target else "")
    config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n{scrape}")
    with run_prometheus(config, tmp, tsdb, "--storage.tsdb.retention.time=100y",
                        *flags) as url:
        yield url


@contextmanager
def run_prometheus(config: Path, tmp: Path, tsdb: Path | None = None,
                   *flags: str) -> Iterator[str]:
    """Prometheus with ``config`` on a free 127.0.0.1 port, its data in ``tsdb`` (default:
    a fresh directory in ``tmp``); yields its URL once it is ready."""
    port = free_port()
    data = tsdb or tmp / "prometheus-data"
    with process(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                  *flags, f"--web.listen-address=127.0.0.1:{port}"], tmp / "prometheus.log",
                 tmp) as proc:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200

        wait_for(ready, "Prometheus to be ready", 60)
        yield url


def query(url: str, promql: str, at: float | None = None) -> dict[str, float]:
    """An instant query; the result as {label values joined by ',': value}."""
    params: dict[str, Any] = {"query": promql}
    if at is not None:
        params["time"] = at
    body = httpx.get(f"{url}/api/v1/query", params=params, timeout=5).json()
    assert body["status"] == "success", body
    return {",".join(r["metric"].values()): float(r["value"][1])
            for r in body["data"]["result"]}


def expected_from(paths: list[str]) -> tuple[Counter[str], BadRecords, int]:
    """What the pipeline makes of the input, in process: verdicts by result, bad records
    and the newest audit time."""
    sink = InMemorySink()
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR,
                                    {**load_config(DEFAULT_CONFIG_DIR), "sinks": {}},
                                    extra_sinks=[sink])
    source = FileSource(paths)
    pipeline.run(source)
    assert pipeline.newest_us is not None
    return (Counter(r.results["slo"]["result"] for r in sink.records), source.bad,
            pipeline.newest_us)


def test_prometheus_scrapes_lunettes_serve(tmp_path: Path) -> None:
    need_prometheus()
    bad_log = tmp_path / "bad.jsonl"
    bad_log.write_bytes(b'not json\n{"kind": "Event", "apiVersion": "audit.k8s.io/v1"}\n'
                        b"[1, 2\n")
    paths = [str(SAMPLE), str(bad_log)]
    results, bad, newest_us = expected_from(paths)
    verdicts = sum(n for result, n in results.items() if result != "not_applicable")
    assert verdicts > 200 and results["met"] and results["violated"] and bad.total == 3

    with lunettes_serve(paths, tmp_path) as base:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "replay", 60)
        with prometheus(tmp_path, base.removeprefix("http://")) as prom:
            wanted = 'sum(lunettes_pod_slo_results_total{result!="not_applicable"})'
            wait_for(lambda: query(prom, wanted).get("") == verdicts,
                     f"{wanted} == {verdicts}")
            by_result = query(prom, "sum by (result) (lunettes_pod_slo_results_total)")
            assert by_result == {k: float(v) for k, v in results.items()}
            assert query(prom, "sum(lunettes_audit_bad_records_total)") == {"": 3.0}
            assert query(prom, 'sum(up{job="lunettes"})') == {"": 1.0}
            assert query(prom, "sum(lunettes_pods_in_flight)") == {"": 0.0}
            newest = query(prom, "max(lunettes_audit_newest_timestamp_seconds)")[""]
            assert newest == pytest.approx(newest_us / 1e6)
            delivered = query(prom, "sum(lunettes_pod_delivery_platform_duration_seconds_"
                                    "count)")[""]
            ready = query(prom, 'sum(lunettes_pods_total{outcome=~"delivered|completed"})')
            ended = query(prom, 'sum(lunettes_pods_total{outcome=~"delivered|completed|'
                                'failed"})')
            assert ready[""] <= delivered <= ended[""]  # + Jobs that ran and failed
            sli = query(prom, "histogram_quantile(0.5, sum by (le) (rate("
                              "lunettes_pod_start_sli_duration_seconds_bucket[1h])))")
            # NaN: the buckets did not move within the window (0 / 0), as when the replay
            # ended before Prometheus' second scrape
            assert all(v >= 0 or math.isnan(v) for v in sli.values())


def test_prometheus_keeps_exemplars_that_name_the_pods_traces(tmp_path: Path) -> None:
    """Prometheus with exemplar storage scrapes lunettes serve (OpenMetrics) and answers
    /api/v1/query_exemplars with trace ids that are Pods' UIDs, each on the bucket of that
    Pod's own platform delivery time."""
    need_prometheus()
    sink = InMemorySink()
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR,
                                    {**load_config(DEFAULT_CONFIG_DIR), "sinks": {}},
                                    extra_sinks=[sink])
    pipeline.run(FileSource([str(SAMPLE)]))
    platform_s = {uuid.UUID(r.uid).hex: r.results["slo"]["platform_s"] for r in sink.records
                  if r.results["slo"].get("delivered")}
    assert len(platform_s) > 100
    metric = "lunettes_pod_delivery_platform_duration_seconds_bucket"

    def exemplars(prom: str) -> list[dict[str, Any]] | None:
        body = httpx.get(f"{prom}/api/v1/query_exemplars",
                         params={"query": metric, "start": 0, "end": time.time() + 60},
                         timeout=5).json()
        assert body["status"] == "success", body
        found = [(series["seriesLabels"], e) for series in body["data"]
                 for e in series["exemplars"]]
        return found or None

    with lunettes_serve([str(SAMPLE)], tmp_path) as base:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "replay", 60)
        with prometheus(tmp_path, base.removeprefix("http://"), None,
                        "--enable-feature=exemplar-storage") as prom:
            found = wait_for(lambda: exemplars(prom), "exemplars in Prometheus", 60)
    assert len(found) >= 5
    for series, exemplar in found:
        uid_hex = exemplar["labels"]["trace_id"]
        assert uid_hex in platform_s, uid_hex
        value = float(exemplar["value"])
        assert value == pytest.approx(platform_s[uid_hex])
        le = float(series["le"])
        assert value <= le  # the exemplar sits on a bucket its value falls in


def test_promtool_backfills_replay_openmetrics(tmp_path: Path) -> None:
    need_prometheus()
    om = tmp_path / "history.om"
    assert main(["replay", str(SAMPLE), "--no-store", "--format", "none",
                 "--openmetrics", str(om)]) == 0
    text = om.read_text()
    assert text.endswith("# EOF\n")
    tsdb = tmp_path / "tsdb"
    out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om),
                          str(tsdb)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    last = max(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lunettes_pods_total{"))
    results, _, _ = expected_from([str(SAMPLE)])
    with prometheus(tmp_path, tsdb=tsdb) as prom:
        at_end = wait_for(lambda: query(prom, "sum(lunettes_pod_slo_results_total)", last)
                          or None, "the backfilled blocks to load", 30)
        assert at_end == {"": float(sum(results.values()))}
        earlier = query(prom, "sum(lunettes_pod_slo_results_total)", last - 1800)[""]
        assert 0 < earlier < sum(results.values())  # history, not just the end


def test_simulated_slow_readiness_meets_and_slow_kubelet_violates(tmp_path: Path,
                                                                   capsysbinary: Any) -> None:
    """End to end through the simulator and ``lunettes replay``: the readiness probe's
    time is the user's, the kubelet's is the platform's."""
    log, truth = tmp_path / "audit.jsonl", tmp_path / "truth.jsonl"
    assert main(["simulate", "--seed", "3", "--pods", "12", "--duration", "60", "-q",
                 "--scenarios", "slow_readiness=1,slow_kubelet=1", "-o", str(log),
                 "--truth", str(truth)]) == 0
    config = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    (config / "slo.yaml").write_text("default: {name: all, deadline_s: 20}\n")
    capsysbinary.readouterr()
    assert main(["replay", str(log), "--config", str(config), "--no-store",
                 "--format", "jsonl"]) == 0
    records = [orjson.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    scenario = {t["uid"]: t["scenario"] for t in map(orjson.loads,
                                                     truth.read_bytes().splitlines())}
    seen = Counter()
    for r in records:
        kind, slo = scenario[r["uid"]], r["slo"]
        seen[kind] += 1
        assert slo["class"] == "all" and slo["delivered"], r
        if kind == "slow_readiness":
            assert slo["result"] == "met", slo
            assert slo["user_s"] > 20 > slo["platform_s"]
        else:
            assert slo["result"] == "violated", slo
            assert slo["platform_s"] > 20
        assert slo["platform_s"] + slo["user_s"] == pytest.approx(slo["total_s"])
        assert 0 < slo["pod_start_sli_s"] <= slo["total_s"]
    assert seen == {"slow_readiness": 5, "slow_kubelet": 7}


def test_serve_follows_a_growing_file(tmp_path: Path) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)[:3000]
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines[:1000]))

    def records_read(base: str) -> float:
        text = httpx.get(f"{base}/metrics").text
        found = re.search(r"^lunettes_audit_records_read_total (\S+)$", text, re.M)
        return float(found[1]) if found else -1

    with lunettes_serve([str(log)], tmp_path, "--follow") as base:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "the first pass")
        assert records_read(base) == 1000
        with log.open("ab") as out:
            out.write(b"".join(lines[1000:]))
        wait_for(lambda: records_read(base) == 3000, "the appended records", 30)
        assert httpx.get(f"{base}/healthz").json()["phase"] == "following"


def test_replay_table_shows_the_slo(tmp_path: Path, capsys: Any) -> None:
    assert main(["replay", str(SAMPLE), "--no-store"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "/" in line]
    assert any(" met " in row for row in rows) and any(" violated " in row for row in rows)


def test_serve_keeps_every_prometheus_sink_beyond_the_one_it_serves(tmp_path: Path) -> None:
    """The first prometheus sink feeds /metrics; a second instance (a textfile written at
    shutdown, for node_exporter) still receives every record."""
    import yaml
    from api_server import serve

    config = tmp_path / "config"
    assert main(["init-config", str(config)]) == 0
    data = yaml.safe_load((config / "pipeline.yaml").read_text())
    textfile = tmp_path / "nightly.prom"
    data["sinks"] = {"sqlite": {"path": str(tmp_path / "lunettes.db")},
                     "prometheus": {"max_classes": 10},
                     "prometheus/nightly": {"textfile": str(textfile)}}
    (config / "pipeline.yaml").write_text(yaml.safe_dump(data))
    pods = re.compile(r'^lunettes_pods_total\{outcome="(\w+)"\} (\S+)$', re.M)
    with serve([str(SAMPLE), "--config", str(config)], tmp_path) as base:
        served = dict(pods.findall(httpx.get(f"{base}/metrics", timeout=30).text))
    wait_for(textfile.exists, "the textfile written at shutdown", 30)
    written = dict(pods.findall(textfile.read_text()))
    assert sum(float(v) for v in served.values()) == 300  # the sample's Pods
    assert written == served
