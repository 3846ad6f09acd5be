"""Scale-out on NATS JetStream, against a real nats-server on 127.0.0.1: webhook receivers
publish EventList batches (the bundled sample's events) partitioned by Pod, consumer
instances each read their partitions through durable consumers, resume after kill -9,
and the API server is not acknowledged while JetStream cannot store its batch."""

from __future__ import annotations

import asyncio
import gzip
import re
import shutil
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("nats", reason="needs the nats extra")
import httpx
import nats
from api_server import SAMPLE, wait_for
from nats_server import nats_server
from test_checkpoint import later
from test_serve import process

from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config

PARTITIONS = 4
PER_BATCH = 400


def rows(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        return {uid: orjson.loads(record)
                for uid, record in conn.execute("SELECT uid, record FROM pods")}


def event_lists(lines: list[bytes], tail: int = 0) -> list[bytes]:
    """The lines as kube-apiserver's batch backend POSTs them: EventLists of PER_BATCH,
    the last ``tail`` lines (an hour apart) one per batch, as its batch wait cuts them."""
    items = []
    for line in lines:
        item = orjson.loads(line)
        del item["kind"], item["apiVersion"]
        items.append(item)
    head = len(items) - tail
    batches = [items[i:min(i + PER_BATCH, head)] for i in range(0, head, PER_BATCH)]
    batches += [[item] for item in items[head:]]
    return [orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                          "metadata": {}, "items": batch}) for batch in batches]


def pipeline_data(tmp: Path, sources: dict[str, Any], name: str,
                  checkpoint: bool = True) -> dict[str, Any]:
    """The shipped pipeline.yaml reading ``sources`` into ``tmp/<name>.db``."""
    data = load_config(DEFAULT_CONFIG_DIR)
    data["sources"] = sources
    data["sinks"] = {"sqlite": {"path": str(tmp / f"{name}.db")}}
    # the tail jumps the audit clock two hours ahead in two records: allowed
    data["input"] = {**data["input"], "max_future_s": 7200}
    if checkpoint:
        data["checkpoint"] = {"path": str(tmp / f"{name}.json"), "interval_s": 0.2}
    return data


def nats_source(url: str, consume: list[int], durable: str, **extra: Any) -> dict[str, Any]:
    return {"nats": {"servers": [url], "partitions": PARTITIONS, "consume": consume,
                     "durable": durable, **extra}}


def last_sequences(url: str, stream: str, prefix: str) -> dict[str, int]:
    """lane -> the stream sequence of the last message of each Pod partition."""
    async def ask() -> dict[str, int]:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            out = {}
            for k in range(PARTITIONS):
                subject = f"{prefix}.pods.{k}"
                message = await js.get_last_msg(stream, subject)
                out[f"nats:{subject}"] = message.seq
            return out
        finally:
            await client.close()
    return asyncio.run(ask())


def checkpointed(path: Path) -> dict[str, int]:
    try:
        saved = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    return {lane: state["stream_seq"] for lane, state in saved["positions"].items()}


def read_everything(path: Path, last: dict[str, int], lanes: list[int]) -> bool:
    """True once the checkpoint rests on the last message of each of ``lanes``."""
    wanted = {lane: seq for lane, seq in last.items()
              if int(lane.rsplit(".", 1)[1]) in lanes}
    return checkpointed(path) == wanted


@contextmanager
def running(data: dict[str, Any]) -> Iterator[Pipeline]:
    """A pipeline reading its sources on a thread until the block ends."""
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data)
    failed: list[BaseException] = []

    def read() -> None:
        try:
            pipeline.run()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        yield pipeline
    finally:
        pipeline.stop()
        thread.join(30)
        pipeline.shutdown()
    assert not failed, failed


@contextmanager
def receiver(tmp: Path, url: str, **extra: Any) -> Iterator[str]:
    """``lunettes serve`` with a webhook source publishing to ``url``; its webhook URL."""
    config = tmp / "receiver"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    settings = {"servers": [url], "partitions": PARTITIONS, **extra}
    text = (config / "pipeline.yaml").read_text().replace(
        "sources: {}", "sources:\n  webhook: {nats: " + orjson.dumps(settings).decode() + "}")
    (config / "pipeline.yaml").write_text(text)
    log = tmp / "receiver.log"
    with process([sys.executable, "-m", "lunettes.cli.main", "serve", "--config",
                  str(config), "--port", "0", "--no-store"], log, tmp) as proc:
        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics",
                              log.read_text())
            return found[1] if found else None

        yield wait_for(listening, "the receiver to listen", 60) + "/audit/webhook"


@dataclass
class Published:
    """The stream the receiver filled, and what a file replay of the same lines wrote."""

    url: str
    tmp: Path
    lines: list[bytes]
    last: dict[str, int]
    expected: dict[str, Any]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    tmp = tmp_path_factory.mktemp("jetstream")
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    final_other = next(line for line in reversed(lines) if b'"verb":"get"' in line
                       and b'"stage":"ResponseComplete"' in line)
    # two records an hour apart after the end move the audit clock past every Pod's
    # timeout: every Pod is final in every run
    lines += [later(final_other, 3600, "end-1"), later(final_other, 7200, "end-2")]
    (tmp / "audit.log").write_bytes(b"".join(lines))
    file_run = Pipeline.from_config(DEFAULT_CONFIG_DIR, pipeline_data(
        tmp, {"file": {"paths": [str(tmp / "audit.log")]}}, "file", checkpoint=False))
    file_run.run()
    file_run.shutdown()
    expected = rows(tmp / "file.db")
    assert len(expected) == 300  # the sample's Pods (lunettes/data/sample-truth.jsonl)
    with nats_server(tmp / "js") as url, receiver(tmp, url) as webhook:
        with httpx.Client(timeout=30) as client:
            for number, body in enumerate(event_lists(lines, tail=2)):
                gzipped = number % 2 == 1  # as --audit-webhook-... sends them, or gzip'ed
                answer = client.post(webhook, content=gzip.compress(body) if gzipped
                                     else body, headers={"Content-Encoding": "gzip"}
                                     if gzipped else {})
                assert answer.status_code == 200, answer.text
        yield Published(url, tmp, lines, last_sequences(url, "LUNETTES_AUDIT",
                                                        "lunettes.audit"), expected)


def test_two_instances_on_half_the_partitions_each_write_what_one_instance_and_the_file_do(
        published: Published, tmp_path: Path) -> None:
    url, last = published.url, published.last
    runs = {"a": [0, 1], "b": [2, 3], "all": list(range(PARTITIONS))}
    for name, lanes in runs.items():
        data = pipeline_data(tmp_path, nats_source(url, lanes, name), name)
        checkpoint = tmp_path / f"{name}.json"
        with running(data):
            wait_for(lambda c=checkpoint, k=lanes: read_everything(c, last, k) or None,
                     f"instance {name} to read its partitions", 120)
    a, b, whole = (rows(tmp_path / f"{name}.db") for name in runs)
    assert a and b and not a.keys() & b.keys()  # no Pod in both
    assert_same({**a, **b}, whole)
    assert_same(whole, published.expected)


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same pod records; else the first difference, field by field."""
    assert got.keys() == expected.keys()
    different = [uid for uid in expected if got[uid] != expected[uid]]
    assert not different, (len(different), {
        key: (got[different[0]].get(key), value)
        for key, value in expected[different[0]].items()
        if got[different[0]].get(key) != value})
