"""The command line's flags as overrides of pipeline.yaml (lunettes/config/overrides.py):
each flag lands in the section it overrides and nothing else changes; the flags are read
from the real parsers of replay and serve."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest

from lunettes.cli.main import build_parser
from lunettes.config.overrides import Overrides, apply

CONFIG = {
    "sources": {"file": {"paths": ["/old.log"]}, "follow/b": {"paths": ["/b.log"]},
                "elasticsearch": {"hosts": ["http://127.0.0.1:9200"]}},
    "processors": ["clock", "dedupe"],
    "input": {"max_bad": 3},
    "sinks": {"sqlite": {"path": "old.db", "batch": 10}, "sqlite/copy": {"path": "c.db"},
              "jsonl": {"path": "out.jsonl"}},
}


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_nothing_said_changes_nothing() -> None:
    assert apply(CONFIG, Overrides()) == CONFIG


def test_replay_flags_land_in_their_sections(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = parsed("replay", "a.log", "-", "--store", "new.db", "--dead-letter", "dl.jsonl",
                  "--otlp-endpoint", "127.0.0.1:4317", "--apiserver-load")
    out = apply(CONFIG, Overrides.from_args(args))
    # PATHs replace the file and follow sources (stdin stays "-"); others stay
    assert out["sources"] == {"elasticsearch": {"hosts": ["http://127.0.0.1:9200"]},
                              "file": {"paths": [str(tmp_path / "a.log"), "-"]}}
    assert out["processors"] == ["requests", "clock", "dedupe"]
    assert out["input"] == {"max_bad": 3, "dead_letter": str(tmp_path / "dl.jsonl")}
    assert out["sinks"] == {"sqlite": {"path": "new.db", "batch": 10},
                            "sqlite/copy": {"path": "c.db"}, "jsonl": {"path": "out.jsonl"},
                            "otlp": {"endpoint": "127.0.0.1:4317"}}
    assert CONFIG["sinks"]["sqlite"] == {"path": "old.db", "batch": 10}  # not modified


def test_no_store_drops_every_sqlite_sink() -> None:
    out = apply(CONFIG, Overrides.from_args(parsed("replay", "a.log", "--no-store")))
    assert set(out["sinks"]) == {"jsonl"}


def test_the_environment_adds_otlp_only_when_none_is_configured() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert apply(CONFIG, Overrides(), env)["sinks"]["otlp"] == {}
    configured: dict[str, Any] = {**CONFIG, "sinks": {"otlp/x": {"endpoint": "e"}}}
    assert apply(configured, Overrides(), env)["sinks"] == {"otlp/x": {"endpoint": "e"}}


def test_serve_follow_webhook_and_checkpoint(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = parsed("serve", "audit.log", "--follow", "--webhook", "--webhook-token-file",
                  "t", "--checkpoint", "cp.json")
    out = apply(CONFIG, Overrides.from_args(args))
    assert out["sources"] == {
        "elasticsearch": {"hosts": ["http://127.0.0.1:9200"]},
        "follow": {"paths": [str(tmp_path / "audit.log")]},
        "webhook": {"token_file": str(tmp_path / "t"),
                    "spool_dir": os.path.join(tmp_path, "lunettes-spool")}}
    assert out["checkpoint"] == {"path": str(tmp_path / "cp.json")}


def test_webhook_flags_merge_into_the_configured_webhook_source() -> None:
    config = {"sources": {"webhook/in": {"nats": {"url": "nats://127.0.0.1:4222"}}}}
    out = apply(config, Overrides.from_args(parsed("serve", "--webhook", "--webhook-spool",
                                                   "/s")))
    assert out["sources"] == {"webhook/in": {"nats": {"url": "nats://127.0.0.1:4222"},
                                             "spool_dir": "/s"}}
    out = apply(config, Overrides.from_args(parsed("serve", "--webhook")))
    assert out["sources"] == config["sources"]  # NATS holds the batches: no spool added
