"""The SQLite store after replays that cut or repeat the bundled sample, compared with the
store of one clean pass (no merge happens in a clean pass: every Pod is written once) and
with the simulator's truth."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_replay_truth import stages_of

import lunettes
import lunettes.private_files
from lunettes.cli.main import main
from lunettes.model.times import parse_time

SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"
TRUTH = SAMPLE.with_name("sample-truth.jsonl")
"""What the simulator did for each Pod of the sample, on its own clock."""
FINAL = {"delivered", "completed", "failed", "deleted", "rejected"}
IDENTITY = ("created", "finished", "outcome", "node", "owner_kind", "owner_name")
REORDER_S = 10
"""pipeline.yaml's reorder window: records this close to a cut may land on either side."""


def replay(store: Path, *paths: Path) -> list[str]:
    """One run per file (separate processes' worth of state); what each printed on
    stderr."""
    said = []
    for path in paths:
        err = io.StringIO()
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            assert main(["replay", "--format", "none", "--store", str(store),
                         str(path)]) == 0
        said.append(err.getvalue())
    return said


def rows(store: Path) -> dict[str, tuple[Any, ...]]:
    db = sqlite3.connect(store)
    try:
        return {row[0]: row for row in db.execute("SELECT * FROM pods")}
    finally:
        db.close()


def records(store: Path) -> dict[str, dict[str, Any]]:
    return {uid: orjson.loads(row[11]) for uid, row in rows(store).items()}


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    with gzip.open(SAMPLE) as f:
        return f.read().splitlines(keepends=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("clean") / "clean.db"
    replay(store, SAMPLE)
    return store


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def test_the_same_log_twice_gives_the_clean_store(tmp_path: Path, clean: Path) -> None:
    replay(tmp_path / "twice.db", SAMPLE, SAMPLE)
    assert rows(tmp_path / "twice.db") == rows(clean)


def test_a_late_block_replayed_alone_changes_nothing(tmp_path: Path, clean: Path,
                                                      lines: list[bytes]) -> None:
    """A block of the log replayed after the whole log: its Pods are partial or in flight
    in that run, and none of them may replace what the clean pass stored."""
    store = tmp_path / "late.db"
    replay(store, SAMPLE)
    for start, end in ((12_000, 16_000), (30_000, 30_500), (0, 2_000)):
        replay(store, write(tmp_path / f"block-{start}.jsonl", lines[start:end]))
    assert rows(store) == rows(clean)


def _time(line: bytes) -> int:
    return parse_time(orjson.loads(line)["requestReceivedTimestamp"])


def _cut(lines: list[bytes], cut: str) -> int:
    """The index of the first line of the second half: a line number, or the first line
    at a fraction of the log's time span."""
    kind, at = cut.split(":")
    if kind == "lines":
        return int(at)
    first, last = _time(lines[0]), _time(lines[-1])
    limit = first + int((last - first) * float(at))
    return next(i for i, line in enumerate(lines) if _time(line) >= limit)


@pytest.mark.parametrize("cut", ["lines:12000", "lines:25000", "lines:40000", "time:0.5"])
def test_two_rotated_halves_in_separate_runs_give_the_clean_pass(
        tmp_path: Path, clean: Path, lines: list[bytes], cut: str) -> None:
    """Replayed in order (as rotated logs are), the second run continues the Pods the first
    left in flight (lunettes/processors/carry.py): the store is the clean pass's row for
    row, and every Pod has the outcome and stage times the simulator recorded."""
    index = _cut(lines, cut)
    store = tmp_path / "ab.db"
    _, second = replay(store, write(tmp_path / "a.jsonl", lines[:index]),
                       write(tmp_path / "b.jsonl", lines[index:]))
    assert rows(store) == rows(clean)
    assert "in flight at the end of the last run into the store, followed on" in second
    got = records(store)
    truth = [orjson.loads(line) for line in TRUTH.read_bytes().splitlines()]
    assert len(truth) == len(got) == 300
    for row in truth:
        assert got[row["uid"]]["outcome"] == row["outcome"]
        assert stages_of(got[row["uid"]]["stages"]) == stages_of(row["stages"])


@pytest.mark.parametrize("cut", ["lines:12000", "time:0.5"])
def test_two_rotated_halves_out_of_order(tmp_path: Path, clean: Path,
                                         lines: list[bytes], cut: str) -> None:
    """The newer half first, then the older (nothing to continue: it starts earlier):
    every Pod the clean pass saw to its end has the clean pass's identity, times, outcome
    and stages; Pods on one side of the cut are stored exactly as by the clean pass, except
    one limit: a Pod in flight at the end of the older half and not seen in the newer one
    stays ``in_progress`` where the clean pass, reading on, timed it out (and its verdicts:
    SLO, diagnosis). Pods with records on both sides keep the SLO and diagnosis of the half
    that saw their end, marked ``partial``."""
    index = _cut(lines, cut)
    # the sample holds late records (up to minutes): the halves overlap in time
    first_after = min(_time(line) for line in lines[index:])
    last_before = max(_time(line) for line in lines[:index])
    a = write(tmp_path / "a.jsonl", lines[:index])
    b = write(tmp_path / "b.jsonl", lines[index:])
    replay(tmp_path / "ba.db", b, a)

    want, got = records(clean), records(tmp_path / "ba.db")
    assert set(got) == set(want)
    margin = REORDER_S * 1_000_000
    one_side = straddling = 0
    for uid, clean_record in want.items():
        merged = got[uid]
        created = parse_time(clean_record["created"]) if clean_record["created"] else None
        last = parse_time(clean_record["last_seen"])
        if last < first_after - margin or (created or 0) > last_before + margin:
            one_side += 1
            if clean_record["outcome"] == "timeout" and merged["outcome"] == "in_progress":
                verdicts = ("outcome", "end_reason", "slo", "diagnosis")
                same = {k: v for k, v in merged.items() if k not in verdicts}
                assert same == {k: v for k, v in clean_record.items() if k not in verdicts}
            else:
                assert merged == clean_record
        else:
            straddling += 1
            assert merged["created"] == clean_record["created"]
            if clean_record["outcome"] in FINAL and merged["owner_kind"] != "Job":
                assert {k: merged[k] for k in IDENTITY} == {k: clean_record[k] for k in IDENTITY}
                # a stage whose start and end markers fall on both sides of the cut may be
                # seen by neither half
                assert {s["name"] for s in merged["stages"]} <= {
                    s["name"] for s in clean_record["stages"]}
                assert merged["stages"][0]["name"] == clean_record["stages"][0]["name"]
    assert one_side > 100 and straddling >= 1


class _Planted:
    """Pickles as a call of ``os.mkdir(path)``: what a tampered store could ask of the
    next run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return os.mkdir, (str(self.path),)


@pytest.mark.parametrize("planted", ["os.mkdir", "a lunettes function"])
def test_a_tampered_carried_state_runs_nothing_and_is_set_aside(
        tmp_path: Path, lines: list[bytes], planted: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """The carried state is read back as lunettes' own classes only: a state that names
    any other callable (os.mkdir; a lunettes function, not a class) is refused before it
    is called, logged as a warning, and the second run starts afresh (no Pod followed
    on)."""
    store, marker = tmp_path / "ab.db", tmp_path / "planted"
    replay(store, write(tmp_path / "a.jsonl", lines[:25000]))
    db = sqlite3.connect(store)
    with db:
        payload = (pickle.dumps(_Planted(marker)) if planted == "os.mkdir" else
                   pickle.dumps(lunettes.private_files.create_private))
        assert db.execute("UPDATE carried_state SET state = ?", (payload,)).rowcount == 1
    db.close()
    (second,) = replay(store, write(tmp_path / "b.jsonl", lines[25000:]))
    assert not marker.exists()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "set aside" in warning and "UnpicklingError" in warning
    assert "followed on" not in second
