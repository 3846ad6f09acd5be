"""The dead-letter file (lunettes/sources/deadletter.py): every bad record of the hostile
corpus is written there where it was read and with its reason, the good records stay as a
clean run writes them, no secret shape gets through, and the file is private and bounded."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest
from hostile import MAX_LINE_BYTES, kinds, sample_lines
from secret_shapes import SHAPES
from test_hostile import _insert

from lunettes.cli.main import main
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource

BASE = sample_lines()[:1000]


def replay(log: bytes, tmp: Path, dead_letter: Path | None, max_mb: float = 64
           ) -> tuple[bytes, BadRecords]:
    """(JSON lines, bad records) of a replay of ``log`` with ``input.dead_letter``."""
    tmp.mkdir(parents=True, exist_ok=True)
    path, out = tmp / "audit.log", tmp / "pods.jsonl"
    path.write_bytes(log)
    data = load_config(DEFAULT_CONFIG_DIR)
    data = {**data, "sources": {}, "sinks": {"jsonl": {"path": str(out)}}}
    if dead_letter is not None:
        data["input"] = {**(data.get("input") or {}), "dead_letter": str(dead_letter),
                         "dead_letter_max_mb": max_mb}
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data)
    bad = pipeline.bad
    try:
        pipeline.run(FileSource([str(path)], bad, max_line_bytes=MAX_LINE_BYTES))
    finally:
        pipeline.shutdown()
    return out.read_bytes(), bad


def entries(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_every_hostile_kind_is_in_the_dead_letter_where_it_was(tmp_path: Path) -> None:
    everything = kinds(BASE)
    log, where = _insert(BASE, everything)
    dead = tmp_path / "dead.jsonl"
    jsonl, bad = replay(log, tmp_path / "hostile", dead)
    clean, clean_bad = replay(b"".join(BASE), tmp_path / "clean", None)
    assert clean_bad.total == 0
    assert jsonl == clean  # the good records are those of a clean run
    path = tmp_path / "hostile" / "audit.log"
    got = {(e["at"], e["reason"]) for e in entries(dead)}
    expected = {(f"{path}:{number}", kind.reason) for number, kind in where.items()}
    assert got == expected
    assert len(entries(dead)) == len(everything) == bad.total
    assert stat.S_IMODE(os.stat(dead).st_mode) == 0o600
    for entry in entries(dead):  # each shows what was read, or the record it was
        assert entry.get("line") or entry.get("record"), entry


def _secret_lines() -> list[bytes]:
    """Bad lines holding every secret shape: cut short (not JSON), with a field of the
    wrong type elsewhere in the record, dated far ahead, and as a wrong-typed create's env
    value."""
    status = next(line for line in BASE if b'"subresource":"status"' in line
                  and b'"ResponseComplete"' in line and b'"conditions"' in line)
    create = next(line for line in BASE if b'"verb":"create"' in line
                  and b'"resource":"pods"' in line and b'"containers"' in line
                  and b'"ResponseComplete"' in line)
    out = []
    for n, (_, message, _) in enumerate(SHAPES):
        doc = orjson.loads(status)
        doc["auditID"] = f"secret-{n}"
        doc["responseObject"]["status"]["message"] = message
        whole = orjson.dumps(doc)
        doc["responseObject"]["status"]["conditions"] = 5
        out.append(orjson.dumps(doc) + b"\n")  # wrong_type:status.conditions
        cut = whole.index(orjson.dumps(message)) + len(orjson.dumps(message)) + 10
        out.append(whole[:cut] + b"\n")  # invalid_json
        doc["responseObject"]["status"].pop("conditions")
        doc["requestReceivedTimestamp"] = doc["stageTimestamp"] = "2099-01-01T00:00:00.000000Z"
        doc["auditID"] = f"secret-future-{n}"
        out.append(orjson.dumps(doc) + b"\n")  # future_timestamp
    doc = orjson.loads(create)
    doc["auditID"] = "secret-env"
    doc["responseObject"]["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "value": "hunter2-ENVLEAK"},
        {"name": "STRIPE_SECRET", "value": "sk_live_ENVLEAK0123456789"}]
    doc["responseObject"]["metadata"]["labels"] = "x"  # wrong_type:metadata.labels
    line = orjson.dumps(doc) + b"\n"
    out += [line, line[:line.index(b"ENVLEAK0123") + 12] + b"\n"]
    return out


def test_the_dead_letter_holds_no_secret_shape(tmp_path: Path) -> None:
    bad_lines = _secret_lines()
    log = b"".join(BASE[:600]) + b"".join(bad_lines) + b"".join(BASE[600:])
    dead = tmp_path / "dead.jsonl"
    _, bad = replay(log, tmp_path, dead)
    text = dead.read_text()
    refused = [e for e in entries(dead) if e["reason"] != "late"]  # the lines are older
    assert len(refused) == len(bad_lines) == bad.total  # than the window: late ones too
    assert {e["reason"] for e in refused} == {
        "wrong_type:status.conditions", "invalid_json", "future_timestamp",
        "wrong_type:metadata.labels"}
    leaked = [name for name, _, secret in SHAPES if secret in text]
    assert not leaked
    assert "ENVLEAK" not in text
    shown = sum(orjson.dumps(e).count(b"secret-") for e in refused)
    assert shown == 3 * len(SHAPES) + 2  # the records are there, redacted


def test_the_cap_stops_the_file_and_is_reported(tmp_path: Path, capsys: Any) -> None:
    lines = list(BASE[:400])
    for n in range(300):
        lines.append(b"not json %d\n" % n)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines))
    dead = tmp_path / "dead.jsonl"
    cap_mb = 0.01  # 10,485 bytes: fewer than 300 entries of about 110 bytes
    config = tmp_path / "config"
    assert main(["init-config", str(config)]) == 0
    pipeline = config / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text().replace(
        "input:\n", f"input:\n  dead_letter_max_mb: {cap_mb}\n", 1))
    code = main(["replay", str(log), "--config", str(config), "--no-store", "--format",
                 "none", "--dead-letter", str(dead), "--max-bad-ratio", "1"])
    assert code == 0
    written = entries(dead)
    assert 0 < len(written) < 300
    assert os.path.getsize(dead) <= cap_mb * 2**20
    assert [e["at"] for e in written] == [f"{log}:{401 + n}" for n in range(len(written))]
    err = capsys.readouterr().err
    assert (f"dead letter {dead}: {len(written)} entries written, {300 - len(written)} more "
            f"not written: the file reached its cap of {cap_mb:g} MiB") in err


def test_replay_workers_share_one_dead_letter(tmp_path: Path) -> None:
    everything = [k for k in kinds(BASE) if k.reason != "line_too_long"]  # 1 MiB: the
    log, where = _insert(BASE, everything)  # corpus's limit, not the command line's
    path = tmp_path / "audit.log"
    path.write_bytes(log)
    dead = tmp_path / "dead.jsonl"
    assert main(["replay", str(path), "--no-store", "--format", "none", "--workers", "2",
                 "--dead-letter", str(dead), "--max-bad-ratio", "1"]) == 0
    got = sorted((e["at"], e["reason"]) for e in entries(dead))
    assert got == sorted((f"{path}:{n}", kind.reason) for n, kind in where.items())


def test_serve_writes_the_dead_letter_as_it_reads(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn", reason="needs the serve extra")
    from test_serve import lunettes_serve
    from waiting import wait_until

    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(BASE[:500]) + b"oops token=LEAKSERVE1\n" + b"".join(BASE[500:]))
    dead = tmp_path / "dead.jsonl"
    with lunettes_serve([str(log)], tmp_path, "--follow", "--dead-letter", str(dead)):
        wait_until(lambda: dead.exists() and dead.stat().st_size > 0, 60, "the dead letter")
        assert entries(dead) == [{"at": f"{log}:501", "reason": "invalid_json",
                                  "detail": entries(dead)[0]["detail"],
                                  "line": "oops token=<redacted>"}]
        assert stat.S_IMODE(os.stat(dead).st_mode) == 0o600
