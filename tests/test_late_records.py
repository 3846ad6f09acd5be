"""Records behind the reorder window are counted and listed where they were: a block of
the sample moved later than the window is named line for line (the run's summary, the dead
letter, serve's /healthz), and nothing else is."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hostile import sample_lines

from lunettes.cli.main import main
from lunettes.model.times import parse_time


def _moved_block(tmp: Path, size: int = 40) -> tuple[Path, list[int]]:
    """The sample with ``size`` consecutive Pod records (creates, bindings, status patches,
    deletes; each written once, not duplicated) moved after the first line written 60 s of
    audit time later than the newest of them; returns the log and the line numbers the
    moved records now have."""
    lines = sample_lines()
    docs = [orjson.loads(line) for line in lines]
    times = [parse_time(doc["requestReceivedTimestamp"]) for doc in docs]
    written = Counter(doc["auditID"] for doc in docs)  # some twice: an HA duplicate

    def about_pods(i: int) -> bool:
        doc = docs[i]
        return doc["stage"] == "ResponseComplete" and written[doc["auditID"]] == 1 and \
            doc["verb"] in ("create", "patch", "update", "delete") and \
            (doc.get("objectRef") or {}).get("resource") == "pods"

    start = 20_000
    block = [i for i in range(start, len(lines)) if about_pods(i)][:size]
    newest = max(times[i] for i in block)
    after = next(i for i in range(block[-1], len(lines)) if times[i] > newest + 60_000_000)
    moved = set(block)
    out: list[bytes] = []
    numbers: list[int] = []
    for i, line in enumerate(lines):
        if i not in moved:
            out.append(line)
        if i == after:
            for j in block:
                out.append(lines[j])
                numbers.append(len(out))
    log = tmp / "audit.log"
    log.write_bytes(b"".join(out))
    return log, numbers


def test_a_block_moved_past_the_window_is_listed_line_for_line(tmp_path: Path,
                                                                 capsys: Any) -> None:
    log, numbers = _moved_block(tmp_path)
    dead = tmp_path / "dead.jsonl"
    assert main(["replay", str(log), "--no-store", "--format", "none",
                 "--dead-letter", str(dead)]) == 0
    err = capsys.readouterr().err
    late = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [e["at"] for e in late] == [f"{log}:{n}" for n in numbers]
    assert {e["reason"] for e in late} == {"late"}
    for entry in late:
        assert entry["record"]["auditID"] and "behind what the reorder window" in entry["detail"]
    assert f"{len(numbers)} late record(s), behind the reorder window" in err
    listed = [line.strip()[3:] for line in err.splitlines() if line.startswith("  at ")]
    assert listed == [f"{log}:{n}" for n in numbers[:10]]


def test_the_clean_sample_has_no_late_record(tmp_path: Path, capsys: Any) -> None:
    """Watches end minutes after they began (their ResponseComplete is far behind): they
    are not about a Pod's timeline and are never late."""
    dead = tmp_path / "dead.jsonl"
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(sample_lines()))
    assert main(["replay", str(log), "--no-store", "--format", "none",
                 "--dead-letter", str(dead)]) == 0
    assert "late record" not in capsys.readouterr().err
    assert dead.read_bytes() == b""


def test_replay_workers_list_the_same_late_records(tmp_path: Path, capsys: Any) -> None:
    log, numbers = _moved_block(tmp_path)
    assert main(["replay", str(log), "--no-store", "--format", "none", "--workers", "2"]) == 0
    err = capsys.readouterr().err
    assert f"{len(numbers)} late record(s)" in err
    listed = [line.strip()[3:] for line in err.splitlines() if line.startswith("  at ")]
    assert listed == [f"{log}:{n}" for n in numbers[:10]]


def test_serve_shows_late_records_on_healthz(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="needs the serve extra")
    import httpx
    from test_serve import lunettes_serve
    from waiting import wait_until

    log, numbers = _moved_block(tmp_path)
    with lunettes_serve([str(log)], tmp_path) as base:
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "the input")
        health = httpx.get(f"{base}/healthz").json()
        assert health["late_records"] == {
            "count": len(numbers), "first": [f"{log}:{n}" for n in numbers[:10]]}
        metrics = httpx.get(f"{base}/metrics").text
        assert f"lunettes_audit_late_records_total {float(len(numbers))}" in metrics
