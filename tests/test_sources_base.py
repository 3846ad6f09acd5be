"""lunettes.sources.base: sources built from the ``sources:`` section, the command line as
an override of it, and several sources merged by audit time."""

from __future__ import annotations

import gzip
import shutil
from itertools import pairwise
from pathlib import Path

import orjson
import pytest
from api_server import SAMPLE

from lunettes.cli.main import main
from lunettes.config.errors import ConfigError
from lunettes.model.audit import AuditRecord
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline
from lunettes.sources.base import merged
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource

TRUTH = SAMPLE.parent / "sample-truth.jsonl"


def config_with(tmp: Path, sources: str) -> Path:
    config = tmp / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    text = (config / "pipeline.yaml").read_text().replace("sources: {}", sources)
    (config / "pipeline.yaml").write_text(text)
    return config


def test_replay_reads_the_configured_sources_with_paths_relative_to_the_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_with(tmp_path, "sources:\n  file/sample: {paths: [logs]}")
    (config / "logs").mkdir()
    shutil.copy(SAMPLE, config / "logs" / "audit.log.gz")
    assert main(["replay", "--config", str(config), "--no-store", "--format", "jsonl"]) == 0
    out = capsys.readouterr().out
    uids = {orjson.loads(line)["uid"] for line in out.splitlines()}
    truth = {orjson.loads(line)["uid"] for line in TRUTH.read_text().splitlines()}
    assert uids == truth  # every Pod the simulator made, from the configured directory


def test_paths_on_the_command_line_replace_the_configured_file_sources(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = config_with(tmp_path, "sources:\n  file: {paths: [missing.log]}")
    assert main(["replay", "--config", str(config), "--no-store", "--format", "jsonl",
                 str(SAMPLE)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == len(TRUTH.read_text().splitlines())
    assert "missing.log" not in captured.err


def test_source_sections_are_checked_like_sinks(tmp_path: Path) -> None:
    config = config_with(tmp_path, "sources:\n  file: {pahts: [a.log]}\n  tape: {}\n"
                                   "  follow: {paths: [-]}")
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_config(config)
    problems = "\n".join(caught.value.problems)
    assert "sources.file.pahts: unknown key (did you mean paths?)" in problems
    assert "sources.file.paths: missing (required)" in problems
    assert ("sources.tape: unknown type 'tape'; supported: elasticsearch, file, follow, "
            "nats, webhook") in problems
    assert "sources.follow.paths: -: --follow reads plain files only" in problems


def test_replay_without_any_input_says_so(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--config", str(config_with(tmp_path, "sources: {}"))]) == 2
    assert "sources: no input" in capsys.readouterr().err


def test_three_sources_are_merged_in_audit_time_order(tmp_path: Path) -> None:
    """Three API servers' logs (every third line of the sample each): one stream in
    requestReceivedTimestamp order, every record once."""
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)[:3000]
    paths = []
    for k in range(3):
        path = tmp_path / f"apiserver-{k}.log"
        path.write_bytes(b"".join(lines[k::3]))
        paths.append(str(path))
    bad = BadRecords()
    records: list[AuditRecord] = list(merged(
        [FileSource([p], bad, every_record=True, name=f"file/{p}") for p in paths],
        lane_capacity=50))
    assert len(records) == len(lines) and bad.total == 0
    assert sorted(r.audit_id for r in records) == sorted(
        orjson.loads(line)["auditID"] for line in lines)

    def disorder(times: list[int]) -> int:
        """How far back in time a stream ever goes."""
        return max(0, *(a - b for a, b in pairwise(times)))

    # merged, the times never go back by more than one log goes back by itself
    own = max(disorder([r.received_us for r in FileSource([p], every_record=True)])
              for p in paths)
    assert disorder([r.received_us for r in records]) <= own
