"""``lunettes replay --workers N``: N real processes write what one process writes."""

from __future__ import annotations

import io
import multiprocessing
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

import lunettes
from lunettes.cli.main import main
from lunettes.cli.workers import Job, Report, WorkerFailed, merge, own_spools, run_workers
from lunettes.pipeline import DEFAULT_CONFIG_DIR, load_config
from lunettes.sources.errors import BadRecords

SAMPLE = str(Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz")
GARBAGE = b"garbage\n"
BAD_TIME = (b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s",'
            b'"stage":"ResponseComplete","objectRef":{"resource":"pods","namespace":"%s",'
            b'"name":"%s"},"requestReceivedTimestamp":"not-a-time"}\n')


@dataclass
class Run:
    rc: int
    out: bytes
    err: str

    @property
    def summary(self) -> str:
        """The summary line and the bad-record report after it."""
        return self.err[self.err.index("read "):]


def replay(*args: str) -> Run:
    """``lunettes replay ARGS`` in this process (its workers are processes of their own)."""
    out, err = io.BytesIO(), io.StringIO()
    text = io.TextIOWrapper(out, write_through=True)
    with redirect_stdout(text), redirect_stderr(err):
        rc = main(["replay", *args])
    text.flush()
    text.detach()  # (closing the wrapper would close ``out``)
    return Run(rc, out.getvalue(), err.getvalue())


def stored(path: Path) -> dict[str, Any]:
    db = sqlite3.connect(path)
    try:
        return {uid: orjson.loads(record)
                for uid, record in db.execute("SELECT uid, record FROM pods")}
    finally:
        db.close()


def essentials(records: dict[str, Any]) -> set[tuple[Any, ...]]:
    """What must not depend on the number of workers, Pod by Pod."""
    return {(r["uid"], r["outcome"],
             tuple((s["name"], s["instance"], s["start"], s["end"]) for s in r["stages"]),
             (r.get("diagnosis") or {}).get("reason"), (r.get("slo") or {}).get("result"))
            for r in records.values()}


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated log of every scenario, written by two API servers, with some
    records twice and three bad lines: not JSON, and two bad Pod records (whose owners
    are likely different workers)."""
    path = tmp_path_factory.mktemp("log") / "audit.log"
    with redirect_stderr(io.StringIO()):
        assert main(["simulate", "-o", str(path), "--pods", "60", "--scenarios", "all=1",
                     "--duration", "120", "--rate", "1", "--duplicates", "0.02",
                     "--apiservers", "2", "--seed", "7", "-q"]) == 0
    lines = path.read_bytes().splitlines(keepends=True)
    lines[100:100] = [GARBAGE]
    lines[200:200] = [BAD_TIME % (b"bad-1", b"default", b"p")]
    lines[300:300] = [BAD_TIME % (b"bad-2", b"team-a", b"q")]
    path.write_bytes(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def truth_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A simulated log of every scenario written by three API servers (records out of
    order, some twice), with the simulator's ground truth."""
    work = tmp_path_factory.mktemp("truth")
    log, truth = work / "audit.log", work / "truth.jsonl"
    with redirect_stderr(io.StringIO()):
        assert main(["simulate", "-o", str(log), "--truth", str(truth), "--pods", "120",
                     "--scenarios", "all=1", "--duration", "240", "--rate", "5",
                     "--apiservers", "3", "--skew", "4", "--duplicates", "0.02",
                     "--request-received", "0.2", "--seed", "23", "-q"]) == 0
    return log, [orjson.loads(line) for line in truth.read_bytes().splitlines()]


@pytest.mark.parametrize("workers", [2, 3])
def test_prescanned_workers_write_one_process_records_and_the_truth(
        truth_log: tuple[Path, list[dict[str, Any]]], tmp_path: Path, workers: int) -> None:
    log, truth = truth_log
    one = replay(str(log), "--format", "jsonl", "--store", str(tmp_path / "1.db"),
                 "--workers", "1")
    many = replay(str(log), "--format", "jsonl", "--store", str(tmp_path / "n.db"),
                  "--workers", str(workers))
    assert one.rc == many.rc == 0
    records = {r["uid"]: r for r in map(orjson.loads, many.out.splitlines())}
    assert stored(tmp_path / "n.db") == stored(tmp_path / "1.db") == records
    assert many.summary == one.summary
    for row in truth:  # the simulator's own account of each Pod
        record = records[row["uid"]]
        assert record["outcome"] == row["outcome"], row["scenario"]
        assert {(s["name"], s["instance"]): (s["start"], s["end"])
                for s in record["stages"]} == {
            (s["name"], s["instance"]): (s["start"], s["end"]) for s in row["stages"]}, \
            row["scenario"]
    assert len(records) == len(truth)


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, tuple[Run, Path]]]:
    work = tmp_path_factory.mktemp("sample")
    yield {n: (replay(SAMPLE, "--format", "jsonl", "--store", str(work / f"{n}.db"),
                      "--workers", str(n)), work / f"{n}.db")
           for n in (1, 2, 3)}


@pytest.mark.parametrize("workers", [2, 3])
def test_sample_with_several_workers(sample_runs: dict[int, tuple[Run, Path]],
                                     workers: int) -> None:
    (one, one_db), (two, two_db) = sample_runs[1], sample_runs[workers]
    assert one.rc == two.rc == 0
    lines = [orjson.loads(line) for line in two.out.splitlines()]
    jsonl = {r["uid"]: r for r in lines}
    assert len(jsonl) == len(lines) == 300  # every Pod once
    assert essentials(jsonl) == essentials({r["uid"]: r for r in map(
        orjson.loads, one.out.splitlines())})
    assert stored(two_db) == stored(one_db) == jsonl  # whole records, byte for byte
    assert two.summary == one.summary
    assert "300 pods" in two.summary


def test_simulated_log_with_bad_lines(log: Path, tmp_path: Path) -> None:
    runs = {n: replay(str(log), "--format", "table", "--store", str(tmp_path / f"{n}.db"),
                      "--workers", str(n)) for n in (1, 2)}
    assert runs[1].rc == runs[2].rc == 0
    assert runs[2].out == runs[1].out  # the table, sorted as one process sorts it
    assert b"60 pods" in runs[2].out
    assert stored(tmp_path / "2.db") == stored(tmp_path / "1.db")
    assert len(stored(tmp_path / "2.db")) == 60
    summary = runs[2].summary
    assert summary == runs[1].summary
    assert "reading" not in runs[2].err  # no progress bar off a terminal
    assert "(3 bad" in summary and "3 bad record(s)" in summary
    assert "invalid_json: 1" in summary and "bad_timestamp: 2" in summary
    for line in (101, 201, 301):  # each reported once, with its file and line
        assert summary.count(f"at {log}:{line}:") == 1


def test_openmetrics_file_ends_with_the_same_totals(log: Path, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client", reason="needs the prometheus extra")
    last: dict[int, dict[str, float]] = {}
    for n in (1, 2):
        path = tmp_path / f"{n}.om"
        assert replay(str(log), "--format", "none", "--no-store", "--openmetrics",
                      str(path), "--workers", str(n)).rc == 0
        text = path.read_text()
        assert text.endswith("# EOF\n")
        series: dict[str, tuple[float, float]] = {}
        for line in text.splitlines():
            if line.startswith("#") or "_created" in line:
                continue
            name, value, stamp = line.rsplit(" ", 2)
            if float(stamp) >= series.get(name, (0.0, 0.0))[0]:
                series[name] = (float(stamp), float(value))
        last[n] = {name: value for name, (_, value) in series.items()}
    assert last[2] == pytest.approx(last[1])  # sums may differ in the last bits
    assert any(name.startswith("lunettes_pod") for name in last[2])


def test_stdin_is_refused_with_several_workers() -> None:
    run = replay("-", "--workers", "2", "--no-store")
    assert run.rc == 2
    assert "stdin" in run.err and "--workers 1" in run.err


def test_auto_reads_stdin_in_one_process(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(log.read_bytes())))
    run = replay("-", "--workers", "auto", "--no-store", "--format", "none")
    assert run.rc == 0 and "60 pods" in run.summary


def test_a_failing_worker_is_named_and_fails_the_run(log: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # the store's directory cannot be made: every worker fails
    run = replay(str(log), "--workers", "2", "--format", "none", "--store",
                 str(blocker / "pods.db"))
    assert run.rc == 1
    assert "lunettes replay: worker " in run.err and " of 2 failed: " in run.err
    assert "Error" in run.err.splitlines()[-1]  # why, in the last line
    assert not multiprocessing.active_children()


def test_a_configuration_only_workers_build_is_reported(log: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    for item in DEFAULT_CONFIG_DIR.iterdir():
        if item.is_file():
            (config / item.name).write_bytes(item.read_bytes())
    text = (config / "pipeline.yaml").read_text()
    (config / "pipeline.yaml").write_text(text.replace("    path: lunettes.db",
                                                       "    pth: lunettes.db"))
    run = replay(str(log), "--config", str(config), "--workers", "2", "--format", "none")
    assert run.rc == 2
    assert run.err.count("sinks.sqlite.pth: unknown key") == 1


def test_a_killed_worker_stops_the_others(log: Path) -> None:
    data = dict(load_config(DEFAULT_CONFIG_DIR), sinks={})
    job = Job(DEFAULT_CONFIG_DIR, data, {}, [str(log)], 2, progress=True)
    killed: list[int] = []

    def kill_the_second(_: int) -> None:  # worker 1 has read 1 MiB of 7: both still run
        if not killed:
            second = next(p for p in multiprocessing.active_children()
                          if p.name == "lunettes-worker-2")
            assert second.pid is not None
            os.kill(second.pid, signal.SIGKILL)
            killed.append(second.pid)

    with pytest.raises(WorkerFailed, match="worker 2 of 2 failed: killed by SIGKILL"):
        run_workers(job, on_bytes=kill_the_second)
    assert killed
    assert not multiprocessing.active_children()  # the first one was stopped too


def test_merge_sums_counts_and_keeps_the_first_places_in_input_order() -> None:
    def report(lines: list[int], path: str = "b.log") -> Report:
        bad = BadRecords(samples_per_reason=3)
        for line in lines:
            bad.add("invalid_json", f"{path}:{line}", "x")
        return Report(bad=bad, lines=9)

    total = merge([report([7, 9]), report([2, 8]), report([5], "a.log")], ["a.log", "b.log"])
    assert total.bad.counts["invalid_json"] == 5 and total.lines == 9
    assert total.bad.samples["invalid_json"] == ["a.log:5: x", "b.log:2: x", "b.log:7: x"]


def test_progress_on_a_terminal_counts_every_byte(log: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lunettes.cli.main", "replay", str(log), "--workers", "2",
         "--format", "none", "--no-store"], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal is closed: the replay is over
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait() == 0
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", shown).decode()
    assert "reading" in text and "60 pods" in text
    sizes = re.findall(r"([\d.]+)/([\d.]+) MB", text)
    assert sizes and sizes[-1][0] == sizes[-1][1]  # worker 1 read every byte


def test_each_worker_spools_otlp_to_a_directory_of_its_own() -> None:
    data = {"sinks": {"otlp": None, "otlp/b": {"spool_dir": "/var/spool/b", "timeout_s": 2},
                      "sqlite": {"path": "x.db"}}}
    assert own_spools(data, 1)["sinks"] == {
        "otlp": {"spool_dir": ".lunettes-spool/otlp/worker-2"},
        "otlp/b": {"spool_dir": "/var/spool/b/worker-2", "timeout_s": 2},
        "sqlite": {"path": "x.db"}}
    assert data["sinks"]["otlp/b"]["spool_dir"] == "/var/spool/b"  # the job's data as it was
