"""The audit webhook receiver of ``lunettes serve``, driven over HTTP on 127.0.0.1 with real
EventList batches (the bundled sample's events, batched as kube-apiserver's batch backend
sends them): gzip, bearer token, 400, 413, 429 under a bounded burst, and every
acknowledged event read exactly once."""

from __future__ import annotations

import gzip
import itertools
import os
import re
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
import httpx
import trustme
from api_server import SAMPLE, event_lists, sample_lines, wait_for
from test_checkpoint import later
from test_serve import process

from lunettes.model.audit import TICK_STAGE, AuditRecord
from lunettes.pipeline import DEFAULT_CONFIG_DIR
from lunettes.sources.webhook import WebhookSource

TOKEN = "s3cret-webhook-token"
TRUTH = SAMPLE.with_name("sample-truth.jsonl")  # the simulator's Pods


def sample_batches(events: int, per_batch: int) -> list[bytes]:
    """EventList bodies of the sample's first ``events`` events."""
    return event_lists(sample_lines()[:events], per_batch)


def metric(base: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{want}}} (\S+)$" if want else rf"^{name} (\S+)$", text,
                      re.M)
    return float(found[1]) if found else 0.0


def test_webhook_accepts_authenticates_limits_and_reads_every_batch_once(
        tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    text = (config / "pipeline.yaml").read_text().replace(
        "sources: {}", "sources:\n  webhook: {max_body_bytes: 3000000, queue_events: 300}")
    (config / "pipeline.yaml").write_text(text)
    (tmp_path / "token").write_text(TOKEN + "\n")
    log = tmp_path / "serve.log"
    with process([sys.executable, "-m", "lunettes.cli.main", "serve", "--config",
                  str(config), "--no-store", "--port", "0", "--webhook", "--webhook-spool",
                  str(tmp_path / "spool"), "--webhook-token-file", str(tmp_path / "token")],
                 log, tmp_path) as proc:
        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics",
                              log.read_text())
            return found[1] if found else None

        base = wait_for(listening, "lunettes serve to listen", 60)
        url = f"{base}/audit/webhook"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        batches = sample_batches(3000, 250)
        with httpx.Client(timeout=30) as client:
            first = client.post(url, content=gzip.compress(batches[0]),
                                headers={**auth, "Content-Encoding": "gzip",
                                         "Content-Type": "application/json"})
            assert first.status_code == 200, first.text
            assert client.post(url, content=batches[1]).status_code == 401
            wrong = client.post(url, content=batches[1],
                                headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401
            assert client.post(url, content=b'{"kind":"Event"}',
                               headers=auth).status_code == 400
            assert client.post(url, content=b"not json", headers=auth).status_code == 400
            huge = b" " * 3_000_001
            assert client.post(url, content=huge, headers=auth).status_code == 413
            bomb = gzip.compress(b" " * 3_000_001)  # small on the wire, large inflated
            assert client.post(url, content=bomb, headers={
                **auth, "Content-Encoding": "gzip"}).status_code == 413
        wait_for(lambda: metric(base, "lunettes_audit_bad_records_total",
                                reason="webhook_invalid_document") == 2, "bad counted", 30)

        # a burst: the other batches at once, 250 events each against a queue of 300
        statuses: list[int] = []

        def send(body: bytes) -> None:
            deadline = time.monotonic() + 120
            with httpx.Client(timeout=30) as client:
                while True:
                    answer = client.post(url, content=body, headers=auth)
                    statuses.append(answer.status_code)
                    if answer.status_code != 429:
                        assert answer.status_code == 200, answer.text
                        return
                    assert answer.headers["Retry-After"] == "1"
                    assert time.monotonic() < deadline, "still refused after 2 minutes"
                    time.sleep(float(answer.headers["Retry-After"]))  # what the API server does

        with ThreadPoolExecutor(len(batches) - 1) as pool:
            list(pool.map(send, batches[1:]))
        assert 429 in statuses and statuses.count(200) == len(batches) - 1
        # every acknowledged event read once: the sample's 3000, no more
        wait_for(lambda: metric(base, "lunettes_audit_records_read_total") == 3000,
                 "every acknowledged event read", 60)
        assert metric(base, "lunettes_source_state", source="webhook", state="following") == 1
        assert httpx.get(f"{base}/readyz").status_code == 200


def test_webhook_over_mutual_tls_takes_the_api_servers_client_certificate_only(
        tmp_path: Path) -> None:
    """The webhook needs a client certificate the CA signed; the probes and /metrics
    answer kubelet and Prometheus without one."""
    serving_ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    serving = serving_ca.issue_cert("127.0.0.1")
    serving.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    (tmp_path / "tls.crt").write_bytes(b"".join(p.bytes() for p in serving.cert_chain_pems))
    client_ca.cert_pem.write_to_path(str(tmp_path / "client-ca.crt"))
    log = tmp_path / "serve.log"
    with process([sys.executable, "-m", "lunettes.cli.main", "serve", "--no-store",
                  "--port", "0", "--webhook", "--webhook-spool", str(tmp_path / "spool"),
                  "--tls-cert", str(tmp_path / "tls.crt"), "--tls-key",
                  str(tmp_path / "tls.key"), "--tls-client-ca",
                  str(tmp_path / "client-ca.crt")], log, tmp_path) as proc:
        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (https://127\.0\.0\.1:\d+)/metrics",
                              log.read_text())
            return found[1] if found else None

        base = wait_for(listening, "lunettes serve to listen", 60)
        batch = sample_batches(100, 100)[0]

        def client(issuer: trustme.CA | None) -> httpx.Client:
            context = ssl.create_default_context()
            serving_ca.configure_trust(context)
            if issuer is not None:
                issuer.issue_cert("kube-apiserver").configure_cert(context)
            return httpx.Client(verify=context, timeout=30)

        with client(client_ca) as apiserver:  # the API server's certificate: accepted
            assert apiserver.post(f"{base}/audit/webhook", content=batch).status_code == 200
        with client(None) as anonymous:  # no certificate: the webhook refuses the batch
            refused = anonymous.post(f"{base}/audit/webhook", content=batch)
            assert refused.status_code == 403, refused.text
            for path in ("/healthz", "/metrics"):  # kubelet, Prometheus: no certificate
                assert anonymous.get(f"{base}{path}").status_code == 200, path
            wait_for(lambda: anonymous.get(f"{base}/readyz").status_code == 200,
                     "/readyz without a certificate", 60)
        with client(other_ca) as stranger, pytest.raises(httpx.TransportError):
            stranger.get(f"{base}/healthz")  # one the CA did not sign: no handshake
        wait_for(lambda: metric_tls(base, client_ca, serving_ca) == 100,
                 "the accepted batch read, the refused one not", 60)


def metric_tls(base: str, client_ca: trustme.CA, serving_ca: trustme.CA) -> float:
    """lunettes_audit_records_read_total over mutual TLS."""
    context = ssl.create_default_context()
    serving_ca.configure_trust(context)
    client_ca.issue_cert("prometheus").configure_cert(context)
    text = httpx.get(f"{base}/metrics", verify=context, timeout=10).text
    found = re.search(r"^lunettes_audit_records_read_total (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


# -- the spool: kept while a restart needs it, bounded, reported when full -----------------

def spooled(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def read_now(stream: Iterator[AuditRecord]) -> list[AuditRecord]:
    """The records the source yields before it idles (its heartbeat)."""
    return list(itertools.takewhile(lambda r: r.stage is not TICK_STAGE, stream))


def test_rotated_spools_go_only_once_a_written_checkpoint_lies_past_them(
        tmp_path: Path) -> None:
    source = WebhookSource(tmp_path, fsync=False, spool_max_bytes=60_000,
                           checkpointing=True)
    stream = iter(source)
    assert read_now(stream) == []  # reading, from the spool's start
    for body in sample_batches(400, 20):
        assert source.receive(body).status == 200
    names = set(spooled(tmp_path))
    assert len(names) >= 5  # the spool rotated at least four times
    for name in names:  # rotated within one tick of the coarse file clock
        os.utime(tmp_path / name, ns=(1_700_000_000 * 10**9,) * 2)
    records = read_now(stream)
    assert len(records) == 400  # one record per event sent
    assert set(spooled(tmp_path)) == names  # read, yet no checkpoint written: all kept
    firsts = [k for k, r in enumerate(records) if r.origin.endswith(":1")]
    assert len(firsts) == len(names)  # the first line of each spool
    third = firsts[2]
    position = records[third].position
    assert position is not None
    lane, n = position
    asked = source.checkpoint(lane, n)  # asked for: about to be written
    assert set(spooled(tmp_path)) == names
    source.checkpoint(lane, n)  # asked again: the first is written, older spools go
    assert set(spooled(tmp_path)) == names - {"webhook.jsonl.000001", "webhook.jsonl.000002"}
    source.close()
    restarted = WebhookSource(tmp_path, fsync=False, spool_max_bytes=60_000,
                              checkpointing=True, resume={lane: asked})
    again = read_now(iter(restarted))  # from the written checkpoint: nothing missing
    restarted.close()
    assert [r.received_us for r in again] == [r.received_us for r in records[third:]]


def test_a_restart_before_the_first_checkpoint_reads_every_acknowledged_event_once(
        tmp_path: Path) -> None:
    source = WebhookSource(tmp_path, fsync=False, spool_max_bytes=30_000,
                           checkpointing=True)
    for body in sample_batches(200, 20):
        assert source.receive(body).status == 200
    assert len(spooled(tmp_path)) >= 3  # the spool rotated
    source.close()  # (as if killed before a checkpoint was written: none to resume from)
    restarted = WebhookSource(tmp_path, fsync=False, spool_max_bytes=30_000,
                              checkpointing=True)
    again = read_now(iter(restarted))
    restarted.close()
    sent = [orjson.loads(line) for line in
            gzip.decompress(SAMPLE.read_bytes()).splitlines()[:200]]
    # each event once, in the order sent (those that cannot be about Pods stay undecoded)
    assert len(again) == len(sent)
    assert all(r.audit_id in ("", e["auditID"]) for r, e in zip(again, sent, strict=True))
    assert any(r.audit_id for r in again)


def test_a_full_spool_refuses_with_503_says_stalled_until_read_and_checkpointed(
        tmp_path: Path) -> None:
    bodies = sample_batches(200, 20)
    source = WebhookSource(tmp_path, fsync=False, spool_max_bytes=30_000,
                           spool_limit_bytes=120_000, checkpointing=True)
    stream = iter(source)
    assert read_now(stream) == []
    accepted = 0
    for body in bodies:
        answer = source.receive(body)
        if answer.status != 200:
            break
        accepted += 1
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert 0 < accepted < len(bodies)
    assert source.state == "stalled" and "spool full" in source.error
    spool_bytes = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert spool_bytes <= 120_000
    records = read_now(stream)
    assert len(records) == 20 * accepted  # every acknowledged event, none of the refused
    assert source.receive(bodies[accepted]).status == 503  # read, but no checkpoint yet
    assert source.state == "stalled"
    last = records[-1].position
    assert last is not None
    source.checkpoint(*last)
    source.checkpoint(*last)  # written: the rotated spools may go
    assert source.state == "following" and source.error == ""  # ready before a batch comes
    assert source.receive(bodies[accepted]).status == 200
    assert source.state == "following" and source.error == ""
    assert len(read_now(stream)) == 20
    source.close()


def test_without_checkpoints_rotated_spools_go_once_read(tmp_path: Path) -> None:
    source = WebhookSource(tmp_path, fsync=False, spool_max_bytes=30_000)
    stream = iter(source)
    assert read_now(stream) == []
    bodies = sample_batches(200, 20)
    for body in bodies[:5]:
        assert source.receive(body).status == 200
    rotated = {n for n in spooled(tmp_path) if n != "webhook.jsonl"}
    assert rotated
    assert len(read_now(stream)) == 100
    for body in bodies[5:]:  # the next rotation deletes those read
        assert source.receive(body).status == 200
    assert not rotated & set(spooled(tmp_path))
    source.close()
    left = {n for n in spooled(tmp_path) if n != "webhook.jsonl"}
    assert left  # rotated, not read yet: kept for the reader
    restarted = WebhookSource(tmp_path, fsync=False, spool_max_bytes=30_000)
    assert spooled(tmp_path) == ["webhook.jsonl"]  # no reader will read them: reported
    assert restarted.bad.counts["webhook_spool_dropped"] == len(left)
    restarted.close()


# -- kill -9 mid-stream: the sender resends what was not acknowledged ------------------------

def gzipped_batches(lines: list[bytes], per_batch: int) -> list[bytes]:
    """EventList bodies of ``lines``, gzip'ed, as kube-apiserver's batch backend sends."""
    items = []
    for line in lines:
        item = orjson.loads(line)
        del item["kind"], item["apiVersion"]
        items.append(item)
    return [gzip.compress(orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                                        "metadata": {}, "items": items[i:i + per_batch]}))
            for i in range(0, len(items), per_batch)]


def send(url: str, bodies: list[bytes],
         acknowledged: Callable[[int], None] | None = None) -> int:
    """POST ``bodies`` in order as the API server does (retrying 429 and 503 after their
    Retry-After); the index of the first one not acknowledged when the receiver went
    away, else ``len(bodies)``."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip",
               "Content-Type": "application/json"}
    with httpx.Client(timeout=60) as client:
        for k, body in enumerate(bodies):
            while True:
                try:
                    answer = client.post(url, content=body, headers=headers)
                except httpx.TransportError:
                    return k
                if answer.status_code not in (429, 503):
                    break
                time.sleep(float(answer.headers["Retry-After"]))  # the sender's backoff
            assert answer.status_code == 200, answer.text
            if acknowledged is not None:
                acknowledged(k)
    return len(bodies)


@contextmanager
def serve_webhook(run: Path, config: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``lunettes serve --webhook --checkpoint`` over ``run``'s spool, store and
    checkpoint; yields the process and its base URL."""
    log = run / f"serve-{len(list(run.glob('serve-*')))}.log"
    with process([sys.executable, "-m", "lunettes.cli.main", "serve", "--config",
                  str(config), "--port", "0", "--webhook", "--webhook-spool",
                  str(run / "spool"), "--webhook-token-file", str(config / "token"),
                  "--store", str(run / "pods.db"), "--checkpoint",
                  str(run / "checkpoint.json")], log, run) as proc:
        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics",
                              log.read_text())
            return found[1] if found else None

        yield proc, wait_for(listening, "lunettes serve to listen", 60)


def at_the_last_line(run: Path) -> bool:
    """Whether the checkpoint rests on the spool's last line (the newest record, held in
    the reorder window): everything before it read, every Pod finished and stored."""
    try:
        saved = orjson.loads((run / "checkpoint.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return False
    spools = sorted((run / "spool").iterdir(), key=lambda p: (p.name == "webhook.jsonl",
                                                              p.name))
    newest = [p for p in spools if p.stat().st_size][-1:]  # (a rotation leaves it empty)
    if not newest:
        return False
    data = newest[0].read_bytes()
    position = next(iter(saved["positions"].values()), {})
    return (position.get("inode") == newest[0].stat().st_ino
            and position.get("offset") == data[:-1].rfind(b"\n") + 1)


def spools_before_the_checkpoint(run: Path) -> list[str]:
    """The rotated spools other than the one the checkpoint names."""
    saved = orjson.loads((run / "checkpoint.json").read_bytes())
    inode = next(iter(saved["positions"].values()))["inode"]
    return [p.name for p in (run / "spool").iterdir()
            if p.name != "webhook.jsonl" and p.stat().st_ino != inode]


def pods(db: Path) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        return {uid: orjson.loads(record)
                for uid, record in conn.execute("SELECT uid, record FROM pods")}


def test_a_webhook_killed_mid_stream_and_restarted_stores_the_records_of_an_uninterrupted_run(
        tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    (config / "token").write_text(TOKEN)
    # a spool rotating every 8 MB; the tail jumps the audit clock two hours: allowed
    text = (config / "pipeline.yaml").read_text().replace(
        "sources: {}", "sources:\n  webhook: {spool_max_bytes: 8000000, fsync: false}\n"
        "checkpoint: {interval_s: 0.2}").replace("max_future_s: 300", "max_future_s: 7200")
    assert "max_future_s: 7200" in text and "spool_max_bytes" in text
    (config / "pipeline.yaml").write_text(text)
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines()
    final_other = next(line for line in reversed(lines) if b'"verb":"get"' in line
                       and b'"stage":"ResponseComplete"' in line)
    # two records an hour apart after the end: every Pod is final in both runs
    lines += [later(final_other, 3600, "end-1").rstrip(b"\n"),
              later(final_other, 7200, "end-2").rstrip(b"\n")]
    bodies = gzipped_batches(lines, 400)
    truth = {orjson.loads(row)["uid"] for row in TRUTH.read_bytes().splitlines()}

    reference = tmp_path / "reference"
    reference.mkdir()
    with serve_webhook(reference, config) as (_, base):
        assert send(f"{base}/audit/webhook", bodies) == len(bodies)
        wait_for(lambda: at_the_last_line(reference), "the uninterrupted run to finish", 300)
    expected = pods(reference / "pods.db")
    assert expected.keys() == truth  # the simulator's Pods, each once

    run = tmp_path / "run"
    run.mkdir()
    half = len(bodies) // 2
    with serve_webhook(run, config) as (proc, base):
        url = f"{base}/audit/webhook"
        assert send(url, bodies[:half]) == half
        wait_for(lambda: metric(base, "lunettes_audit_records_read_total")
                 == 400 * half and (run / "checkpoint.json").exists()
                 and metric(base, "lunettes_pods_in_flight") > 0, "half the batches read",
                 120)
        sending = threading.Event()

        def acknowledged(k: int) -> None:
            if k == 2:
                sending.set()

        with ThreadPoolExecutor(1) as pool:
            rest = pool.submit(send, url, bodies[half:], acknowledged)
            assert sending.wait(120), "the sender is sending"
            proc.send_signal(signal.SIGKILL)  # while batches are on their way
            proc.wait(30)
            unacknowledged = half + rest.result(60)
    assert half + 3 <= unacknowledged < len(bodies)  # it died mid-stream
    assert 0 < len(pods(run / "pods.db")) < len(expected)
    with serve_webhook(run, config) as (_, base):  # restarted: the rest is resent
        assert send(f"{base}/audit/webhook", bodies[unacknowledged:]) == (
            len(bodies) - unacknowledged)
        wait_for(lambda: at_the_last_line(run), "the restarted run to finish", 300)
        # the rotated spools went once the checkpoint lay past them
        wait_for(lambda: not spools_before_the_checkpoint(run), "the spools read to go", 30)
    got = pods(run / "pods.db")
    assert got.keys() == expected.keys()
    different = [uid for uid in expected if got[uid] != expected[uid]]
    assert not different, (different[:3], got[different[0]], expected[different[0]])
