"""The API server load analysis inside ``lunettes replay`` (``--apiserver-load``): its
report is ``lunettes analyze apiserver``'s, its Prometheus metrics, backfilled into a real
Prometheus, count what the simulator sent (its own requests are the truth), and the label
guard keeps them bounded without losing a request."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from lunettes.apiserver.counts import OTHER, RequestCounts
from lunettes.apiserver.series import SeriesBuilder
from lunettes.cli.main import main
from lunettes.simulate.apiserver_traffic import Injection, Traffic, generate
from lunettes.sources.files import FileSource

pytest.importorskip("prometheus_client", reason="needs the prometheus extra")
from test_grafana import instant
from test_serve import need_prometheus, prometheus, wait_for

INTERVAL_S = 60
INJECTIONS = [Injection("new_client", "step", 40, 50, 120.0),
              Injection("list_storm", "burst", 80, 82, 250.0)]


def _traffic(tmp: Path) -> tuple[Traffic, Path]:
    traffic = generate(7, intervals=120, nodes=4, injections=INJECTIONS)
    path = tmp / "audit.log"
    path.write_bytes(b"".join(traffic.lines()))
    return traffic, path


def test_replay_report_is_analyze_apiserver_report_and_names_the_injections(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("statsmodels", reason="needs the analyze extra")
    traffic, path = _traffic(tmp_path)
    report = tmp_path / "load.json"
    assert main(["replay", str(path), "--no-store", "--format", "none", "--apiserver-load",
                 "--apiserver-report", str(report)]) == 0
    assert main(["analyze", "apiserver", str(path), "--format", "json"]) == 0
    alone = json.loads(capsys.readouterr().out)
    streamed = json.loads(report.read_text())
    assert streamed == alone
    assert streamed["requests"] == len(traffic.requests)
    assert report.stat().st_mode & 0o777 == 0o600
    start_s = traffic.start_s
    for injection in INJECTIONS:  # the simulator's windows, on its own clock
        truth = injection.truth()["user_agent"]
        found = [a for a in streamed["anomalies"]
                 if a["start"] <= _time(start_s + injection.end * INTERVAL_S)
                 and a["end"] >= _time(start_s + injection.start * INTERVAL_S)]
        assert found, injection
        assert truth in {c["attributes"].get("user_agent") for a in found
                         for c in a["culprits"]}


def _time(seconds: int) -> str:
    from lunettes.model.times import format_time

    return format_time(seconds * 1_000_000)


def test_backfilled_request_metrics_count_what_the_simulator_sent(tmp_path: Path) -> None:
    """promtool backfills the replay's OpenMetrics file; Prometheus then answers, at the
    end of the traffic, the simulator's counts: requests per client and verb, the
    injected client's requests during its window, latencies by verb (watches none), and
    the cluster-wide LISTs without limit."""
    need_prometheus()
    traffic, path = _traffic(tmp_path)
    om = tmp_path / "metrics.om"
    assert main(["replay", str(path), "--no-store", "--format", "none", "--apiserver-load",
                 "--openmetrics", str(om)]) == 0
    tsdb = tmp_path / "tsdb"
    out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om),
                          str(tsdb)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    sent = traffic.requests
    end_s = traffic.start_s + 120 * INTERVAL_S + INTERVAL_S
    with prometheus(tmp_path, tsdb=tsdb) as url:
        wait_for(lambda: instant(url, "count(lunettes_apiserver_requests_total)", end_s)[1],
                 "the backfilled blocks", 60)

        def by(expr: str, label: str, at: float = end_s) -> dict[str, float]:
            import httpx

            body = httpx.get(f"{url}/api/v1/query", params={"query": expr, "time": at},
                             timeout=10).json()
            return {r["metric"].get(label, ""): float(r["value"][1])
                    for r in body["data"]["result"]}

        clients = by("sum by (client) (lunettes_apiserver_requests_total)", "client")
        assert clients == dict(Counter(r.client for r in sent))
        verbs = by("sum by (verb) (lunettes_apiserver_requests_total)", "verb")
        assert verbs == dict(Counter(r.verb for r in sent))
        injected = Counter(r.client for r in sent if r.injection == 0)
        (rogue, n), = injected.items()
        window = INJECTIONS[0]
        before = traffic.start_s + window.start * INTERVAL_S
        after = traffic.start_s + window.end * INTERVAL_S + INTERVAL_S
        increase = by(f'sum(lunettes_apiserver_requests_total{{client="{rogue}"}})', "",
                      after)[""] - by(f'sum(lunettes_apiserver_requests_total{{client='
                                      f'"{rogue}"}})', "", before).get("", 0.0)
        assert increase == n
        observed = by("sum by (verb) (lunettes_apiserver_request_duration_seconds_count)",
                      "verb")
        assert observed == dict(Counter(r.verb for r in sent if r.verb != "watch"))
        unbounded = by("sum by (client) (lunettes_apiserver_unbounded_lists_total)", "client")
        assert unbounded == dict(Counter(r.client for r in sent
                                         if r.verb == "list" and not r.namespace))
        assert by("sum(lunettes_apiserver_label_folded_requests_total)", "") == {"": 0.0}


def test_the_label_guard_folds_late_values_and_loses_no_request() -> None:
    """Three places per label: the first three clients of closed intervals keep their
    names, every later one counts as other; the folded requests are counted."""
    counts = RequestCounts(interval_s=60, max_values=3)
    builder = SeriesBuilder(60, top_k=100, on_close=counts.close, on_late=counts.add_joint)
    from lunettes.apiserver.scan import RequestFacts

    total = 0
    for i in range(10):
        for minute in range(5):
            for _ in range(i + 1):
                builder.add(RequestFacts((1_800_000_000 + minute * 60) * 1_000_000 + i, "get",
                                         "/api/v1/nodes", "u", f"client-{i}/1.0", "nodes", "",
                                         "", "n", 200, 1000, None))
                total += 1
    builder.series()
    by_client: Counter[str] = Counter()
    for (client, *_), n in counts.requests.items():
        by_client[client] += n
    assert sum(by_client.values()) == total
    assert len(by_client) == 4 and OTHER in by_client
    assert counts.folded["client"] == by_client[OTHER] > 0
    assert counts.folded["verb"] == 0


def test_lines_stay_with_the_source_unless_the_analysis_asks(tmp_path: Path) -> None:
    _, path = _traffic(tmp_path)
    plain = FileSource([str(path)])
    assert not any(record.raw for record in plain)
    asked = FileSource([str(path)])
    asked.keep_lines = True
    assert all(record.raw.startswith(b'{"kind":"Event"') for record in asked)


def test_workers_write_the_one_process_report_of_every_request_sent(tmp_path: Path) -> None:
    """``--workers 2``: the parent's pre-scan counts the requests; its report is the one
    of a single process, and both count every request the simulator sent, those of an
    EventList line (whose bytes route it to no worker) included."""
    pytest.importorskip("statsmodels", reason="needs the analyze extra")
    traffic, path = _traffic(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    items = [json.loads(line) for line in lines[-40:]]
    batch = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                        "items": items}).encode() + b"\n"
    path.write_bytes(b"".join(lines[:-40]) + batch)
    reports = {}
    for workers in ("1", "2"):
        out = tmp_path / f"load-{workers}.json"
        assert main(["replay", str(path), "--no-store", "--format", "none", "--workers",
                     workers, "--apiserver-load", "--apiserver-report", str(out)]) == 0
        reports[workers] = json.loads(out.read_text())
    assert reports["2"] == reports["1"]
    assert reports["1"]["requests"] == len(traffic.requests)


def test_a_report_without_the_analysis_and_workers_metrics_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, path = _traffic(tmp_path)
    assert main(["replay", str(path), "--no-store", "--format", "none", "--apiserver-load",
                 "--workers", "2", "--openmetrics", str(tmp_path / "m.om")]) == 2
    assert "--workers 1" in capsys.readouterr().err
    assert main(["replay", str(path), "--no-store", "--format", "none",
                 "--apiserver-report", str(tmp_path / "x.json")]) == 2
    assert "needs --apiserver-load" in capsys.readouterr().err


def test_the_requests_processor_is_configured_in_pipeline_yaml(tmp_path: Path) -> None:
    """The processor is a key of the processors list like any other: its settings are
    checked (a bad one named), and a pipeline built with it counts every final request
    the simulator sent, with no sink."""
    from lunettes.config.errors import ConfigError
    from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config

    traffic, path = _traffic(tmp_path)
    data = load_config(DEFAULT_CONFIG_DIR)
    data["sinks"] = {}
    data["sources"] = {"file": {"paths": [str(path)]}}
    data["processors"] = [{"requests": {"interval_s": 0, "top_kk": 3}}, "clock", "dedupe",
                          "bodies", "reorder", "fold"]
    with pytest.raises(ConfigError) as error:
        Pipeline.from_config(DEFAULT_CONFIG_DIR, data, {})
    text = "\n".join(error.value.problems)
    assert "processors.requests.interval_s: must be at least 1" in text and "top_kk" in text
    data["processors"][0] = {"requests": {"interval_s": 60}}
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data, {})
    assert pipeline.requests is not None
    pipeline.run()
    assert pipeline.requests.requests == len(traffic.requests)
    assert sum(pipeline.requests.counts.requests.values()) == len(traffic.requests)


def test_serve_exposes_the_request_metrics_of_what_it_read(tmp_path: Path) -> None:
    """``lunettes serve --apiserver-load`` over the bundled sample: once it has read the
    file, /metrics counts every final-stage event of it, per verb as the file says."""
    pytest.importorskip("fastapi", reason="needs the serve extra")
    import gzip

    import httpx
    from prometheus_client.parser import text_string_to_metric_families
    from test_serve import SAMPLE, lunettes_serve

    events = [json.loads(line) for line in gzip.decompress(SAMPLE.read_bytes()).splitlines()
              if line.strip()]
    final = Counter(e["verb"] for e in events if e.get("stage") in ("ResponseComplete",
                                                                      "Panic"))
    assert sum(final.values()) > 1000
    with lunettes_serve([str(SAMPLE)], tmp_path, "--apiserver-load") as base:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "the read", 120)

        folded: Counter[str] = Counter()
        resources: Counter[str] = Counter()

        def verbs() -> Counter[str] | None:
            found: Counter[str] = Counter()
            for family in text_string_to_metric_families(httpx.get(f"{base}/metrics").text):
                for sample in family.samples:
                    if family.name == "lunettes_apiserver_requests" and \
                            sample.name.endswith("_total"):
                        found[sample.labels["verb"]] += int(sample.value)
                        resources[sample.labels["resource"]] += int(sample.value)
                    elif family.name == "lunettes_apiserver_label_folded_requests" and \
                            sample.name.endswith("_total"):
                        folded[sample.labels["label"]] += int(sample.value)
            return found if sum(found.values()) == sum(final.values()) else None

        assert wait_for(verbs, "every request counted", 60) == final
        # watches end (and are written) long after they start: late, yet labelled
        assert sum(folded.values()) == 0 and "other" not in resources
