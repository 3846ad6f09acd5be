"""Dedupe, the reorder window, and the processors: section (plug-ins, checks)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
import yaml
from api_server import SAMPLE
from hypothesis import given
from hypothesis import strategies as st

from lunettes.cli.main import main
from lunettes.model.audit import AuditRecord
from lunettes.processors.dedupe import Deduplicator
from lunettes.processors.reorder import ReorderWindow

S = 1_000_000
SAMPLE_TRUTH = SAMPLE.with_name("sample-truth.jsonl")


def rec(t_s: float, audit_id: str = "", stage: str = "ResponseComplete") -> AuditRecord:
    return AuditRecord(audit_id or f"id-{t_s}", stage, "get", round(t_s * S))


def test_only_final_stages_count_once() -> None:
    stats: Counter[str] = Counter()
    dedupe = Deduplicator(stats)
    records = [rec(1, "a", "RequestReceived"), rec(1, "a"), rec(1, "a"), rec(2, "b", "Panic"),
               rec(3, "c", "ResponseStarted"), rec(3, "c")]
    assert [r.audit_id for r in records if dedupe.accept(r)] == ["a", "b", "c"]
    assert stats == Counter({"interim_stage": 2, "duplicate": 1})


def test_dedupe_forgets_old_ids() -> None:
    stats: Counter[str] = Counter()
    dedupe = Deduplicator(stats, horizon_us=10 * S)
    assert dedupe.accept(rec(0, "a"))
    assert dedupe.accept(rec(100, "b"))
    assert len(dedupe._seen) == 1  # "a" is beyond the horizon
    assert not dedupe.accept(rec(100.5, "b"))


@given(st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=200),
       st.integers(min_value=0, max_value=2**32))
def test_window_restores_order_within_skew(times: list[int], seed: int) -> None:
    """Records displaced by at most the window come out in time order, none lost."""
    ordered = sorted(times)
    shuffled = [(t + random.Random(seed + i).uniform(-5, 5), t) for i, t in enumerate(ordered)]
    shuffled.sort()  # arrival order: true time plus up to 5 s of writer skew
    stats: Counter[str] = Counter()
    window = ReorderWindow(stats, window_us=10 * S)
    out: list[int] = []
    for i, (_, t) in enumerate(shuffled):
        out += [r.received_us for r in window.push(rec(t, f"r{i}"))]
    out += [r.received_us for r in window.flush()]
    assert out == [t * S for t in ordered]
    assert stats["late"] == 0


def test_records_later_than_the_window_are_counted() -> None:
    stats: Counter[str] = Counter()
    window = ReorderWindow(stats, window_us=10 * S)
    released = list(window.push(rec(0))) + list(window.push(rec(30)))
    assert [r.received_us for r in released] == [0]
    # 5 s is behind the clock (30 s) by more than the window: released at once, not late
    assert [r.received_us for r in window.push(rec(5))] == [5 * S]
    assert stats["late"] == 0
    # 1 s is older than the 5 s record already released: late, still passed on
    assert [r.received_us for r in window.push(rec(1))] == [1 * S]
    assert stats["late"] == 1
    assert len(window) == 1  # only the 30 s record is held


TOY_PROCESSOR = '''
"""A toy processor: records about Pods of some namespaces never reach the fold."""


class NamespaceFilter:
    reads = "records"
    writes = None

    def __init__(self, name, drop):
        self.name, self.drop = name, drop

    @classmethod
    def from_config(cls, name, section, context):
        drop = section.strings("drop") or []
        section.check_unknown()
        return cls(name, frozenset(drop))

    def process(self, items, run):
        for record in items:
            if record.namespace in self.drop:
                run.stats["toy_dropped"] += 1
                continue
            yield record

    def held(self):
        return {}

    def state(self):
        return None

    def restore(self, state):
        pass
'''


@pytest.fixture
def toy_processor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution with an entry point in ``lunettes.processors``."""
    site = tmp_path / "site"
    info = site / "lunettes_toy_processor-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "lunettes_toy_processor.py").write_text(TOY_PROCESSOR)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lunettes-toy-processor\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[lunettes.processors]\nnamespace_filter = lunettes_toy_processor:NamespaceFilter\n")
    monkeypatch.syspath_prepend(str(site))


def test_a_plugin_processor_is_added_by_config_only(
        toy_processor: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    assert main(["init-config", str(config)]) == 0
    pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
    pipeline["processors"].insert(-1, {"namespace_filter": {"drop": ["payments"]}})  # before fold
    pipeline["sinks"] = {}
    (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    capsys.readouterr()
    assert main(["replay", str(SAMPLE), "--config", str(config), "--format", "jsonl"]) == 0
    written = {orjson.loads(line)["uid"] for line in capsys.readouterr().out.splitlines()}
    truth = [orjson.loads(line) for line in SAMPLE_TRUTH.read_bytes().splitlines()]
    assert any(pod["namespace"] == "payments" for pod in truth)
    assert written == {pod["uid"] for pod in truth if pod["namespace"] != "payments"}


def test_a_processor_out_of_place_is_reported_once_with_its_location(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    assert main(["init-config", str(config)]) == 0
    pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
    pipeline["processors"] = ["clock", "fold", {"reorder": {"window_s": -1}}]
    (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    capsys.readouterr()
    assert main(["validate-config", str(config)]) != 0
    err = capsys.readouterr().err
    where = f"{config / 'pipeline.yaml'}: processors.reorder"
    assert err.count(f"{where}.window_s: must not be negative") == 1
    assert err.count(f"{where}: reads lines, but gets timelines here; move it") == 1
