"""Restart without loss: ``lunettes serve --follow --checkpoint`` stopped (SIGKILL, SIGTERM)
in the middle of a log, restarted, ends with the same pod records as a run never
interrupted (no Pod lost, none duplicated, the Pods in flight at the stop not cut in
two)."""

from __future__ import annotations

import gzip
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
import httpx
from api_server import SAMPLE, wait_for
from test_serve import process

from lunettes.pipeline import DEFAULT_CONFIG_DIR


def later(line: bytes, seconds: int, audit_id: str) -> bytes:
    """``line`` (a final record not about a Pod) ``seconds`` after its time: it moves the
    audit clock past every Pod's timeout."""
    event = orjson.loads(line)
    for key in ("requestReceivedTimestamp", "stageTimestamp"):
        at = datetime.fromisoformat(event[key].replace("Z", "+00:00")) + timedelta(
            seconds=seconds)
        event[key] = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event["auditID"] = audit_id
    return orjson.dumps(event) + b"\n"


def rows(db: Path) -> dict[str, bytes]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT uid, record FROM pods").fetchall())


def checkpoint_offset(path: Path) -> int | None:
    try:
        saved = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return next(iter(saved["positions"].values()), {}).get("offset")


def metric(base: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", httpx.get(f"{base}/metrics", timeout=5).text, re.M)
    return float(found[1]) if found else 0.0


@contextmanager
def serve(tmp: Path, config: Path, log: Path, db: Path, checkpoint: Path, output: Path
          ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``lunettes serve --follow --checkpoint``; yields the process and its base URL."""
    with process([sys.executable, "-m", "lunettes.cli.main", "serve", "--config",
                  str(config), "--port", "0", "--follow", "--store", str(db),
                  "--checkpoint", str(checkpoint), str(log)], output, tmp) as proc:
        def listening() -> str | None:
            assert proc.poll() is None, output.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics",
                              output.read_text())
            return found[1] if found else None

        yield proc, wait_for(listening, "lunettes serve to listen", 60)


@dataclass
class Reference:
    """The input, the config, and the records of the run never interrupted."""

    config: Path
    lines: list[bytes]
    whole: bytes
    end: int
    half: int
    expected: dict[str, bytes]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    tmp_path = tmp_path_factory.mktemp("reference")
    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    # the tail below jumps the audit clock two hours ahead in two records: allowed
    text = (config / "pipeline.yaml").read_text().replace(
        "sources: {}", "sources: {}\ncheckpoint: {interval_s: 0.2}").replace(
        "max_future_s: 300", "max_future_s: 7200")
    (config / "pipeline.yaml").write_text(text)
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    final_other = next(line for line in reversed(lines) if b'"verb":"get"' in line
                       and b'"stage":"ResponseComplete"' in line)
    # two records an hour apart after the end: the first, released by the second, moves
    # the audit clock past every Pod's timeout, so every Pod is final in both runs
    tail = [later(final_other, 3600, "end-1"), later(final_other, 7200, "end-2")]
    whole = b"".join(lines + tail)
    end = len(whole) - len(tail[-1])  # where the checkpoint rests once all is read
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "audit.log").write_bytes(whole)
    with serve(ref, config, ref / "audit.log", ref / "pods.db", ref / "checkpoint.json",
               ref / "serve.log"):
        wait_for(lambda: checkpoint_offset(ref / "checkpoint.json") == end,
                 "the uninterrupted run to read everything", 240)
    expected = rows(ref / "pods.db")
    assert len(expected) == 300  # the sample's Pods (lunettes/data/sample-truth.jsonl)
    return Reference(config, lines, whole, end, len(b"".join(lines[: len(lines) // 2])),
                     expected)


@pytest.mark.parametrize(("stop", "checkpoints"), [
    (signal.SIGKILL, True), (signal.SIGTERM, True), (signal.SIGKILL, False)],
    ids=["kill-9", "sigterm", "kill-9-before-the-first-checkpoint"])
def test_a_restart_mid_stream_gives_the_records_of_an_uninterrupted_run(
        tmp_path: Path, reference: Reference, stop: signal.Signals, checkpoints: bool
) -> None:
    config, lines, whole, end, half, expected = (
        reference.config, reference.lines, reference.whole, reference.end, reference.half,
        reference.expected)
    first_config = config
    if not checkpoints:  # the first run is killed before it writes a checkpoint
        first_config = tmp_path / "config"
        shutil.copytree(config, first_config)
        path = first_config / "pipeline.yaml"
        path.write_text(path.read_text().replace("interval_s: 0.2", "interval_s: 3600"))
    # stopped after half the log, restarted on the whole of it
    run = tmp_path / "run"
    run.mkdir()
    log = run / "audit.log"
    log.write_bytes(whole[:half])
    with serve(run, first_config, log, run / "pods.db", run / "checkpoint.json",
               run / "serve.log") as (proc, base):
        wait_for(lambda: metric(base, "lunettes_audit_records_read_total") == len(lines) // 2
                 and (checkpoint_offset(run / "checkpoint.json") is not None
                      or not checkpoints)
                 and metric(base, "lunettes_pods_in_flight") > 0, "half the log read", 120)
        proc.send_signal(stop)
        proc.wait(30)
    written = rows(run / "pods.db")
    assert len(written) < len(expected) and (written or not checkpoints)
    resumed_at = checkpoint_offset(run / "checkpoint.json")
    if checkpoints:
        assert resumed_at is not None and resumed_at < half
    else:  # no checkpoint: the file is read again from its start
        assert resumed_at is None
        resumed_at = 0
    with log.open("ab") as out:
        out.write(whole[half:])
    with serve(run, config, log, run / "pods.db", run / "checkpoint.json",
               run / "serve2.log") as (_, base):
        wait_for(lambda: checkpoint_offset(run / "checkpoint.json") == end,
                 "the restarted run to read everything", 240)
        # it read again from its checkpoint: the oldest record of a Pod then in flight
        assert metric(base, "lunettes_audit_records_read_total") == whole[resumed_at:].count(
            b"\n")
    got = rows(run / "pods.db")
    assert got.keys() == expected.keys()
    different = [uid for uid in expected if orjson.loads(got[uid]) != orjson.loads(
        expected[uid])]
    assert not different, (different[:3], orjson.loads(got[different[0]]),
                           orjson.loads(expected[different[0]]))
