"""The sink contract (lunettes/sinks/base.py), checked on every registered sink: built from
its pipeline.yaml section, it delivers an exported batch by force_flush (seen at a local
receiver, fake Elasticsearch, the file or the registry), shuts down twice without error,
and refuses an export after shutdown with SinkClosedError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from api_server import SAMPLE, replay
from fake_es import FakeElasticsearch
from otlp_receiver import OTLPReceiver

from lunettes import registry
from lunettes.config.errors import Section
from lunettes.model.ids import trace_id
from lunettes.model.record import PodRecord
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError


@dataclass
class Places:
    """Where the sinks deliver: a directory, a real OTLP receiver, a fake Elasticsearch."""

    tmp: Path
    otlp: OTLPReceiver
    es: FakeElasticsearch


def _sqlite_rows(places: Places, sink: Any) -> set[str]:
    import sqlite3

    with sqlite3.connect(places.tmp / "store.db") as db:
        return {row[0] for row in db.execute("SELECT uid FROM pods")}


def _jsonl_lines(places: Places, sink: Any) -> set[str]:
    return {orjson.loads(line)["uid"]
            for line in (places.tmp / "pods.jsonl").read_bytes().splitlines()}


def _otlp_traces(places: Places, sink: Any) -> set[str]:
    return {s.span.trace_id.hex() for s in places.otlp.spans}


def _es_documents(places: Places, sink: Any) -> set[str]:
    return {doc["uid"] for doc in places.es.docs("lunettes-pods-").values()}


def _prometheus_count(places: Places, sink: Any) -> int:
    return int(sum(sample.value for metric in sink.registry.collect()
                   if metric.name == "lunettes_pods" for sample in metric.samples
                   if sample.name == "lunettes_pods_total"))


# type -> (its pipeline.yaml section, what it delivered, what that should be for a batch)
CASES: dict[str, tuple[Callable[[Places], dict[str, Any]], Callable[[Places, Any], Any],
                       Callable[[list[PodRecord]], Any]]] = {
    "sqlite": (lambda p: {"path": str(p.tmp / "store.db")}, _sqlite_rows,
               lambda batch: {r.uid for r in batch}),
    "jsonl": (lambda p: {"path": str(p.tmp / "pods.jsonl")}, _jsonl_lines,
              lambda batch: {r.uid for r in batch}),
    "otlp": (lambda p: {"endpoint": p.otlp.grpc_endpoint}, _otlp_traces,
             lambda batch: {trace_id(r.uid).hex() for r in batch}),
    "elasticsearch": (lambda p: {"hosts": [p.es.url], "spool_dir": str(p.tmp / "spool"),
                                 "max_retries": 1}, _es_documents,
                      lambda batch: {r.uid for r in batch}),
    "prometheus": (lambda p: {}, _prometheus_count, len),
}


@pytest.fixture(scope="module")
def batch() -> list[PodRecord]:
    records = sorted(replay([str(SAMPLE)]).values(), key=lambda r: r.uid)
    return records[:40]


@pytest.fixture
def places(tmp_path: Path) -> Iterator[Places]:
    receiver = OTLPReceiver().start()
    es = FakeElasticsearch().start()
    try:
        yield Places(tmp_path, receiver, es)
    finally:
        es.stop()
        receiver.stop()


def test_every_registered_sink_has_a_contract_case() -> None:
    assert set(registry.names(registry.SINKS)) == set(CASES), (
        "a new sink type: add its section and delivery check to CASES")


@pytest.mark.parametrize("kind", sorted(CASES))
def test_sink_contract(kind: str, places: Places, batch: list[PodRecord]) -> None:
    config, delivered, expected = CASES[kind]
    problems: list[str] = []
    section = Section(config(places), f"pipeline.yaml: sinks.{kind}", problems)
    sink = registry.load(registry.SINKS, kind).from_config(
        kind, section, BuildContext(config_dir=places.tmp))
    assert problems == []
    sink.export(batch[:25])
    sink.export(batch[25:])
    assert sink.force_flush(30.0) is True
    assert delivered(places, sink) == expected(batch)
    sink.shutdown()
    sink.shutdown()  # safe twice
    with pytest.raises(SinkClosedError):
        sink.export(batch[:1])
    assert delivered(places, sink) == expected(batch)  # nothing lost, nothing added
