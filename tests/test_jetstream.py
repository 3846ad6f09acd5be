"""Scale-out on NATS JetStream, against a real nats-server on 127.0.0.1: webhook receivers
publish EventList batches (the bundled sample's events) partitioned by Pod, consumer
instances each read their partitions through durable consumers, resume after kill -9,
and the API server is not acknowledged while JetStream cannot store its batch."""

from __future__ import annotations

import asyncio
import gzip
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("nats", reason="needs the nats extra")
import httpx
import nats
from api_server import SAMPLE, event_lists, running, wait_for
from nats_server import free_port, nats_server
from test_checkpoint import later
from test_serve import process

from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sources.jetstream_link import StreamSettings
from lunettes.sources.jetstream_publish import JetStreamPublisher
from lunettes.sources.webhook import WebhookSource

PARTITIONS = 4
PER_BATCH = 400


def rows(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        return {uid: orjson.loads(record)
                for uid, record in conn.execute("SELECT uid, record FROM pods")}


def pipeline_data(tmp: Path, sources: dict[str, Any], name: str,
                  checkpoint: bool = True) -> dict[str, Any]:
    """The shipped pipeline.yaml reading ``sources`` into ``tmp/<name>.db``."""
    data = load_config(DEFAULT_CONFIG_DIR)
    data["sources"] = sources
    data["sinks"] = {"sqlite": {"path": str(tmp / f"{name}.db")}}
    # the tail jumps the audit clock two hours ahead in two records: allowed
    data["processors"] = [{"clock": {**item["clock"], "max_future_s": 7200}}
                          if isinstance(item, dict) and "clock" in item else item
                          for item in data["processors"]]
    if checkpoint:
        data["checkpoint"] = {"path": str(tmp / f"{name}.json"), "interval_s": 0.2}
    return data


def nats_source(url: str, consume: list[int], durable: str, **extra: Any) -> dict[str, Any]:
    return {"nats": {"servers": [url], "partitions": PARTITIONS, "consume": consume,
                     "durable": durable, **extra}}


def last_sequences(url: str, stream: str, prefix: str) -> dict[str, int]:
    """lane -> the stream sequence of the last message of each Pod partition and of the
    clock."""
    async def ask() -> dict[str, int]:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            out = {}
            for subject in [*(f"{prefix}.pods.{k}" for k in range(PARTITIONS)),
                            f"{prefix}.clock"]:
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
    """True once the checkpoint rests on the last message of each of ``lanes`` and of
    the clock."""
    wanted = {lane: seq for lane, seq in last.items()
              if lane.endswith(".clock") or int(lane.rsplit(".", 1)[1]) in lanes}
    return checkpointed(path) == wanted


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
            for number, body in enumerate(event_lists(lines, PER_BATCH, tail=2)):
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


def publisher(url: str, stream: str, **extra: Any) -> WebhookSource:
    """The webhook receiver of ``lunettes serve`` without its HTTP route (the route is
    driven in the other tests): EventList bodies in, published to ``stream``."""
    return WebhookSource(None, publisher=JetStreamPublisher(StreamSettings(
        servers=(url,), stream=stream, prefix=stream.lower(), partitions=PARTITIONS,
        **extra)))


def consumer_pending(url: str, stream: str, consumers: list[str]) -> int | None:
    """Messages JetStream has not delivered yet to ``consumers`` (None before they are
    made)."""
    async def ask() -> int | None:
        client = await nats.connect(url)
        try:
            js = client.jetstream()
            infos = [await js.consumer_info(stream, name) for name in consumers]
            return sum(info.num_pending or 0 for info in infos)
        except nats.js.errors.NotFoundError:
            return None
        finally:
            await client.close()
    return asyncio.run(ask())


def metric(base: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", httpx.get(f"{base}/metrics", timeout=5).text,
                      re.M)
    return float(found[1]) if found else 0.0


@contextmanager
def instance(tmp: Path, config: Path, name: str, run: int
             ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``lunettes serve --checkpoint`` over the nats source of ``config``."""
    log = tmp / f"{name}-{run}.log"
    with process([sys.executable, "-m", "lunettes.cli.main", "serve", "--config",
                  str(config), "--port", "0", "--store", str(tmp / f"{name}.db"),
                  "--checkpoint", str(tmp / f"{name}.json")], log, tmp) as proc:
        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics",
                              log.read_text())
            return found[1] if found else None

        yield proc, wait_for(listening, f"instance {name} to listen", 60)


@pytest.mark.parametrize("checkpoints", [True, False],
                         ids=["after-checkpoints", "before-the-first-checkpoint"])
def test_an_instance_killed_mid_stream_resumes_from_its_consumer_and_checkpoint(
        published: Published, tmp_path: Path, checkpoints: bool) -> None:
    url, stream = published.url, f"KILLED{int(checkpoints)}"
    bodies = event_lists(published.lines, PER_BATCH, tail=2)
    half = len(bodies) // 2
    hook = publisher(url, stream)
    try:
        for body in bodies[:half]:
            assert hook.receive(body).status == 200
        config = tmp_path / "config"
        shutil.copytree(DEFAULT_CONFIG_DIR, config)
        data = pipeline_data(tmp_path, nats_source(url, [2, 3], "b", stream=stream,
                                                   subject_prefix=stream.lower()), "b")
        if not checkpoints:
            data["checkpoint"]["interval_s"] = 3600  # killed before it writes one
        (config / "pipeline.yaml").write_bytes(orjson.dumps(data))  # (JSON is YAML)
        with instance(tmp_path, config, "b", 1) as (proc, base):
            wait_for(lambda: consumer_pending(url, stream, ["b-2", "b-3"]) == 0
                     and (checkpointed(tmp_path / "b.json") or not checkpoints)
                     and metric(base, "lunettes_pods_in_flight") > 0,
                     "instance b to read the first half", 120)
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert (tmp_path / "b.json").exists() == checkpoints
        data["checkpoint"]["interval_s"] = 0.2
        (config / "pipeline.yaml").write_bytes(orjson.dumps(data))
        killed = rows(tmp_path / "b.db")
        for body in bodies[half:]:
            assert hook.receive(body).status == 200
    finally:
        hook.close()
    last = last_sequences(url, stream, stream.lower())
    with instance(tmp_path, config, "b", 2):
        wait_for(lambda: read_everything(tmp_path / "b.json", last, [2, 3]) or None,
                 "instance b, restarted, to read its partitions", 120)
    a_data = pipeline_data(tmp_path, nats_source(url, [0, 1], "a", stream=stream,
                                                 subject_prefix=stream.lower()), "a")
    with running(a_data):
        wait_for(lambda: read_everything(tmp_path / "a.json", last, [0, 1]) or None,
                 "instance a to read its partitions", 120)
    a, b = rows(tmp_path / "a.db"), rows(tmp_path / "b.db")
    assert len(killed) < len(b) and (killed or not checkpoints)  # Pods still to come
    assert not a.keys() & b.keys()
    assert_same({**a, **b}, published.expected)  # no Pod lost, none twice, none cut


def health(base: str, source: str) -> tuple[int, int, str]:
    """/readyz's and /healthz's status codes, and the state ``source`` says it is in
    (``lunettes_source_state``)."""
    found = re.search(rf'^lunettes_source_state{{source="{source}",state="(\w+)"}} 1\.0$',
                      httpx.get(f"{base}/metrics", timeout=5).text, re.M)
    return (httpx.get(f"{base}/readyz", timeout=5).status_code,
            httpx.get(f"{base}/healthz", timeout=5).status_code, found[1] if found else "")


def test_the_api_server_is_not_acknowledged_while_jetstream_cannot_store_its_batch(
        tmp_path: Path) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)[:800]
    first, second = event_lists(lines, PER_BATCH)
    events = {(e["auditID"], e["stage"]) for e in map(orjson.loads, lines)}
    port = free_port()
    ready, down = (200, 200, "following"), (503, 200, "stalled")
    with receiver(tmp_path, f"nats://127.0.0.1:{port}", stream="DOWN",
                  subject_prefix="down", timeout_s=2) as webhook:
        base = webhook.removesuffix("/audit/webhook")
        wait_for(lambda: health(base, "webhook") == down or None,
                 "the receiver to say it cannot reach NATS", 60)
        with nats_server(tmp_path / "js", port):
            wait_for(lambda: health(base, "webhook") == ready or None,
                     "the receiver to be ready once NATS runs", 60)
            assert httpx.post(webhook, content=first, timeout=30).status_code == 200
        assert metric(base, 'lunettes_nats_publish_failures_total{source="webhook"}') == 0
        # the server is down: not ready, not acknowledged, retry later
        wait_for(lambda: health(base, "webhook") == down or None,
                 "the receiver to say NATS is gone", 60)
        answer = httpx.post(webhook, content=second, timeout=30)
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        assert metric(base, 'lunettes_nats_publish_failures_total{source="webhook"}') == 1
        # up again: ready, the API server's retries go through, the batch is stored once
        with nats_server(tmp_path / "js", port) as url:
            wait_for(lambda: health(base, "webhook") == ready or None,
                     "the receiver to be ready again", 60)
            assert httpx.post(webhook, content=second, timeout=30).status_code == 200
            stored = asyncio.run(stream_messages(url, "DOWN"))
    assert stored == len(events) + 2  # each event once, and a clock message per batch


def test_an_instance_is_not_ready_while_nats_server_is_down_and_reads_on_once_it_is_back(
        tmp_path: Path) -> None:
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)[:800]
    first, second = event_lists(lines, PER_BATCH)
    port, stream, lanes = free_port(), "OUTAGE", list(range(PARTITIONS))
    url = f"nats://127.0.0.1:{port}"
    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    data = pipeline_data(tmp_path, nats_source(  # stalled at once when disconnected,
        url, lanes, "all", stream=stream, subject_prefix=stream.lower(),  # not after
        stall_s=3600), "all")                                              # stall_s
    (config / "pipeline.yaml").write_bytes(orjson.dumps(data))
    ready, down = (200, 200, "following"), (503, 200, "stalled")
    with instance(tmp_path, config, "all", 1) as (_, base):
        wait_for(lambda: health(base, "nats") == down or None,
                 "the instance to say it cannot reach NATS", 60)
        with ExitStack() as running_server:
            running_server.enter_context(nats_server(tmp_path / "js", port))
            hook = running_server.enter_context(closing(publisher(url, stream)))
            assert hook.receive(first).status == 200
            wait_for(lambda: health(base, "nats") == ready or None,
                     "the instance to read the first batch", 60)
        wait_for(lambda: health(base, "nats") == down or None,
                 "the instance to say NATS is gone", 60)
        with nats_server(tmp_path / "js", port), closing(publisher(url, stream)) as hook:
            wait_for(lambda: health(base, "nats") == ready or None,
                     "the instance to be ready again", 60)
            assert hook.receive(second).status == 200
            about_pods = asyncio.run(pod_messages(url, stream))
            wait_for(lambda: metric(base, "lunettes_audit_records_read_total") == about_pods
                     or None, "the instance to read the batch sent after the restart", 60)


async def pod_messages(url: str, stream: str) -> int:
    """How many events the stream holds on its Pod subjects."""
    client = await nats.connect(url)
    try:
        info = await client.jetstream().stream_info(stream, subjects_filter=">")
        return sum(n for subject, n in (info.state.subjects or {}).items()
                   if ".pods." in subject)
    finally:
        await client.close()


async def stream_messages(url: str, stream: str) -> int:
    client = await nats.connect(url)
    try:
        return (await client.jetstream().stream_info(stream)).state.messages
    finally:
        await client.close()


def test_an_instance_reading_through_a_restart_of_nats_server_writes_the_same_records(
        published: Published, tmp_path: Path) -> None:
    port, stream = free_port(), "RESTARTED"
    with ExitStack() as first_server:
        url = first_server.enter_context(nats_server(tmp_path / "js", port))
        hook = publisher(url, stream)
        try:
            for body in event_lists(published.lines, PER_BATCH, tail=2):
                assert hook.receive(body).status == 200
        finally:
            hook.close()
        last = last_sequences(url, stream, stream.lower())
        lanes = list(range(PARTITIONS))
        data = pipeline_data(tmp_path, nats_source(url, lanes, "all", stream=stream,
                                                   subject_prefix=stream.lower()), "all")
        with running(data):
            wait_for(lambda: checkpointed(tmp_path / "all.json") or None,
                     "a first checkpoint", 60)
            first_server.close()  # stopped while the instance reads
            assert not read_everything(tmp_path / "all.json", last, lanes)
            with nats_server(tmp_path / "js", port):
                wait_for(lambda: read_everything(tmp_path / "all.json", last, lanes) or None,
                         "the instance to read everything once the server is back", 120)
    assert_same(rows(tmp_path / "all.db"), published.expected)
