"""Exit codes of ``lunettes replay`` (lunettes.cli.exitcodes), through the command line."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

import lunettes
from lunettes.cli import exitcodes
from lunettes.cli.main import main
from lunettes.pipeline import Pipeline
from lunettes.sinks.memory import InMemorySink
from lunettes.sources.files import FileSource

SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"


def replay(*args: str) -> int:
    return main(["replay", *args, "--format", "none", "--no-store"])


def _with_garbage(tmp_path: Path, count: int) -> Path:
    log = tmp_path / "audit.log"
    log.write_bytes(gzip.decompress(SAMPLE.read_bytes()) + b"garbage\n" * count)
    return log


def test_a_clean_run_exits_0() -> None:
    assert replay(str(SAMPLE)) == exitcodes.OK


def test_nothing_readable_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty, binary = tmp_path / "empty.log", tmp_path / "binary.log"
    empty.write_bytes(b"")
    binary.write_bytes(bytes(range(256)) * 64)
    for path in (tmp_path / "missing.log", empty, binary):
        assert replay(str(path)) == exitcodes.FAILED, path
        assert "nothing readable" in capsys.readouterr().err


def test_usage_and_config_errors_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as usage:
        replay(str(SAMPLE), "--max-bad-ratio", "2")
    assert usage.value.code == exitcodes.USAGE
    (tmp_path / "pipeline.yaml").write_text(
        "processors: [clock, dedupe, {reorder: {window_s: -1}}, fold]\n")
    assert replay(str(SAMPLE), "--config", str(tmp_path)) == exitcodes.USAGE


def test_bad_records_over_the_limit_exit_3(tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    lines = len(gzip.decompress(SAMPLE.read_bytes()).splitlines())
    many = _with_garbage(tmp_path, lines // 50)
    assert replay(str(many)) == exitcodes.DATA_LOST  # 2% of the lines are bad
    assert "more than --max-bad-ratio 0.01" in capsys.readouterr().err
    assert replay(str(many), "--max-bad-ratio", "0.05") == exitcodes.OK
    few = _with_garbage(tmp_path, 1)
    assert replay(str(few)) == exitcodes.OK
    assert replay(str(few), "--max-bad", "0") == exitcodes.DATA_LOST
    assert "1 bad record(s), more than --max-bad 0" in capsys.readouterr().err


def test_an_input_file_not_read_to_its_end_exits_3(tmp_path: Path) -> None:
    assert replay(str(SAMPLE), str(tmp_path / "missing.log")) == exitcodes.DATA_LOST


def test_exit_status_is_documented_in_help() -> None:
    out = subprocess.run([sys.executable, "-m", "lunettes.cli.main", "replay", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "exit status:" in out and "3  data lost" in out


class _LosingSink(InMemorySink):
    """A sink that says it dropped records for good (the ``lost`` hook)."""

    lost = 2


def test_records_a_sink_lost_make_the_run_exit_3() -> None:
    pipeline = Pipeline.from_config(extra_sinks=[_LosingSink()])
    stats = pipeline.run(FileSource([str(SAMPLE)]))
    outcome = exitcodes.RunOutcome(stats["records"], {}, stats["sink_lost"])
    assert stats["sink_lost"] == 2
    assert exitcodes.exit_code(outcome)[0] == exitcodes.DATA_LOST
    assert exitcodes.exit_code(exitcodes.RunOutcome(10, {}, 0)) == (exitcodes.OK, "")
