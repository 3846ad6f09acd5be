"""The command line end to end: replay to stdout, the SQLite store and OTLP spans."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from realdata import real

from lunettes.cli.main import main
from lunettes.pipeline import DEFAULT_CONFIG_DIR
from lunettes.sinks.sqlite import SQLiteSink

GKE = [f"gke-cloud-logging/container_recorder_test_1_{i}.yaml" for i in (1, 2, 3)]
GKE_UID = "c0b4e00d-da76-4255-9a02-670d5b74aa3a"


def _jsonl(out: bytes) -> list[dict]:
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def test_replay_jsonl_store_and_otlp(tmp_path: Path, capsysbinary: pytest.CaptureFixture,
                                     otlp_receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    store = tmp_path / "pods.db"
    paths = [real(p) for p in GKE] + [real("openshift-4.12-requestresponse.jsonl")]
    rc = main(["replay", *paths, "--format", "jsonl", "--store", str(store),
               "--otlp-endpoint", otlp_receiver.grpc_endpoint])
    captured = capsysbinary.readouterr()
    assert rc == 0
    records = {r["uid"]: r for r in _jsonl(captured.out)}
    assert len(records) == 5  # the GKE pod and four PodSecurity rejections
    gke = records[GKE_UID]
    assert gke["name"] == "nginx-deployment-surge-8655b4b8c5-xf5f4"
    assert gke["outcome"] == "in_progress" and gke["created"].endswith("Z")
    assert gke["stages"][0]["name"] == "delivery" and gke["stages"][0]["end"] is None
    rejected = [r for r in records.values() if r["outcome"] == "rejected"]
    assert len(rejected) == 4 and all(r["uid_derived"] for r in rejected)
    # 7 in timelines: the GKE Pod's create and 2 status patches, 4 rejected creates; the
    # GKE export's 3rd pods/status record is an interim stage of one of them.
    assert (b"read 103 records: 7 in Pod timelines (0 bad, 0 duplicate, 1 interim stages), "
            b"95 others") in captured.err

    spans = otlp_receiver.wait_for_spans(sum(len(r["stages"]) for r in records.values()))
    roots = [s for s in spans if not s.span.parent_span_id]
    assert len(roots) == 5
    gke_root = next(s for s in roots if s.span.trace_id == uuid.UUID(GKE_UID).bytes)
    assert gke_root.resource["k8s.pod.uid"] == GKE_UID

    sink = SQLiteSink(store)
    try:
        assert sink.count() == 5
        assert sink.get(GKE_UID) == gke
        assert sink.by_name(gke["namespace"], gke["name"]) == [gke]
    finally:
        sink.shutdown()

    # a replay of the same log overwrites, never duplicates
    assert main(["replay", *paths, "--format", "none", "--store", str(store)]) == 0
    sink = SQLiteSink(store)
    assert sink.count() == 5
    sink.shutdown()


def test_replay_table_through_the_console_script(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lunettes.cli.main", "replay", "--no-store",
         real("perfspec-kubeadm-metadata.jsonl.gz")],
        capture_output=True, text=True, cwd=tmp_path, check=True)
    assert "my-redis-master-0" in result.stdout and "rejected" in result.stdout
    # PROVENANCE.md: 180 pod creates, bindings and status patches, 236 Event creates (not
    # all about a Pod); creates without a name (generateName, Metadata level) cannot be placed.
    assert ("read 16563 records: 331 in Pod timelines (0 bad, 0 duplicate, 0 interim "
            "stages), 16232 others (16065 not decoded)") in result.stderr
    assert not (tmp_path / "lunettes.db").exists()


def test_replay_reports_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(Path(real("openshift-4.12-small.jsonl")).read_bytes() + b"garbage\n")
    # 1 bad line of 6 is over the default --max-bad-ratio (1%): exit 3 after the report
    assert main(["replay", str(log), "--format", "none", "--no-store"]) == 3
    err = capsys.readouterr().err
    assert "1 bad record(s)" in err and f"{log}:6" in err


def test_init_config_writes_an_editable_copy_once(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "etc" / "lunettes"
    assert main(["init-config", str(target)]) == 0
    files = sorted(p.name for p in target.iterdir())
    assert files == ["diagnosis.yaml", "pipeline.yaml", "slo.yaml", "stages.yaml"]
    assert (target / "slo.yaml").read_text() == (DEFAULT_CONFIG_DIR / "slo.yaml").read_text()
    (target / "slo.yaml").write_text("# mine\n")
    assert main(["init-config", str(target)]) == 1  # never overwrites an edited copy
    assert "--force" in capsys.readouterr().err
    assert (target / "slo.yaml").read_text() == "# mine\n"
    assert main(["init-config", "--force", str(target)]) == 0
    assert (target / "slo.yaml").read_text() == (DEFAULT_CONFIG_DIR / "slo.yaml").read_text()


def test_validate_config_and_graph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate-config", str(DEFAULT_CONFIG_DIR)]) == 0
    assert "ok (4 analyzers" in capsys.readouterr().out
    assert main(["graph"]) == 0
    graph = capsys.readouterr().out
    assert graph.startswith("flowchart LR") and "a_stages --> a_lifecycle" in graph
    (tmp_path / "pipeline.yaml").write_text("analyzers:\n  stages: {confg: x}\n")
    assert main(["validate-config", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "analyzers.stages.confg: unknown key (did you mean config?)" in err


# -- replay with a collector in trouble --------------------------------------------------

SAMPLE = str(Path(__file__).resolve().parent.parent / "lunettes" / "data" /
             "sample-audit.jsonl.gz")


def _otlp_config(tmp_path: Path, endpoint: str, **otlp: object) -> Path:
    """A copy of the bundled config whose only sink is OTLP to ``endpoint``."""
    import shutil

    import yaml

    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config, ignore=shutil.ignore_patterns("*.py"))
    pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
    pipeline["sinks"] = {"otlp": {"endpoint": endpoint, "spool_dir": str(tmp_path / "spool"),
                                  "batch_size": 10, "timeout_s": 2, **otlp}}
    (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    return config


def _replay_s(*args: str) -> tuple[int, float]:
    began = time.monotonic()
    rc = main(["replay", SAMPLE, "--format", "none", *args])
    return rc, time.monotonic() - began


def test_a_hung_collector_neither_stalls_the_replay_nor_loses_a_span(
        tmp_path: Path, otlp_receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from otlp_receiver import OTLPReceiver

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    # What a healthy collector gets: the reference the faulty run must end up equal to.
    healthy = tmp_path / "healthy"
    rc, base_s = _replay_s("--config", str(_otlp_config(healthy, otlp_receiver.grpc_endpoint)))
    assert rc == 0
    reference = otlp_receiver.spans_per_trace()
    assert len(reference) > 100

    hung = OTLPReceiver().start()
    try:
        hung.fail("hang")
        config = _otlp_config(tmp_path, hung.grpc_endpoint)
        rc, hung_s = _replay_s("--config", str(config))
        assert rc == 0  # nothing lost: everything waits in the spool
        # Synchronous export took timeout_s per request (30 of them): one at most here.
        assert hung_s < base_s + 2 + 6
        assert hung.spans == []
        spooled = sum(f.pods for f in _spool_files(tmp_path / "spool"))
        assert spooled == len(reference)

        hung.recover()
        # The next run with the same spool_dir sends it, once, before its own records
        # (an input with no Pod in it: only what was spooled goes out).
        lease = tmp_path / "lease.jsonl"
        lease.write_text(orjson.dumps({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": str(uuid.uuid4()), "stage": "ResponseComplete", "verb": "update",
            "objectRef": {"resource": "leases", "namespace": "kube-system", "name": "x",
                          "apiGroup": "coordination.k8s.io"},
            "requestReceivedTimestamp": "2024-01-01T00:00:00.000000Z",
            "stageTimestamp": "2024-01-01T00:00:00.001000Z"}).decode() + "\n")
        assert main(["replay", str(lease), "--format", "none", "--config", str(config)]) == 0
        assert hung.spans_per_trace() == reference
        assert _spool_files(tmp_path / "spool") == []
    finally:
        hung.stop()


def test_a_spool_too_small_for_the_outage_exits_3(tmp_path: Path, otlp_receiver,
                                                  capsys: pytest.CaptureFixture) -> None:
    otlp_receiver.go_down()
    config = _otlp_config(tmp_path, otlp_receiver.http_endpoint, protocol="http/protobuf",
                          spool_max_mb=0.01)
    rc, _ = _replay_s("--config", str(config))
    assert rc == 3
    assert "data lost" in capsys.readouterr().err


def _spool_files(directory: Path) -> list:
    from lunettes.sinks.otlp import SPOOL_SUFFIX
    from lunettes.sinks.spool import DiskSpool

    return DiskSpool(directory, 2**30, SPOOL_SUFFIX).files()


def test_the_core_install_replays_without_the_analyze_extra(tmp_path: Path) -> None:
    """numpy, statsmodels and matplotlib (the analyze extra) are not needed by the first
    README command: with them unimportable, the CLI builds every subcommand and replays."""
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('numpy', 'statsmodels', 'matplotlib'):\n"
        "            raise ImportError(f'{name} blocked by the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from lunettes.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    sample = Path(__file__).resolve().parents[1] / "lunettes" / "data" / "sample-audit.jsonl.gz"
    done = subprocess.run([sys.executable, "-c", blocker, "replay", str(sample), "--format",
                           "none", "--no-store"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "300 pods" in done.stderr
