"""The audit webhook receiver of ``lunettes serve``, driven over HTTP on 127.0.0.1 with real
EventList batches (the bundled sample's events, batched as kube-apiserver's batch backend
sends them): gzip, bearer token, 400, 413, 429 under a bounded burst, and every
acknowledged event read exactly once."""

from __future__ import annotations

import gzip
import re
import shutil
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
import httpx
import trustme
from api_server import SAMPLE, wait_for
from test_serve import process

from lunettes.pipeline import DEFAULT_CONFIG_DIR

TOKEN = "s3cret-webhook-token"


def event_lists(events: int, per_batch: int) -> list[bytes]:
    """EventList bodies of the sample's first ``events`` events."""
    items = []
    for line in gzip.decompress(SAMPLE.read_bytes()).splitlines()[:events]:
        item = orjson.loads(line)
        del item["kind"], item["apiVersion"]
        items.append(item)
    return [orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                          "metadata": {}, "items": items[i:i + per_batch]})
            for i in range(0, len(items), per_batch)]


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
        batches = event_lists(3000, 250)
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
        batch = event_lists(100, 100)[0]

        def client(issuer: trustme.CA | None) -> httpx.Client:
            context = ssl.create_default_context()
            serving_ca.configure_trust(context)
            if issuer is not None:
                issuer.issue_cert("kube-apiserver").configure_cert(context)
            return httpx.Client(verify=context, timeout=30)

        with client(client_ca) as apiserver:  # the API server's certificate: accepted
            assert apiserver.post(f"{base}/audit/webhook", content=batch).status_code == 200
        for issuer in (None, other_ca):  # none, or one the CA did not sign: refused
            with client(issuer) as stranger, pytest.raises(httpx.TransportError):
                stranger.post(f"{base}/audit/webhook", content=batch)
        wait_for(lambda: metric_tls(base, client_ca, serving_ca) == 100,
                 "the accepted batch read", 60)


def metric_tls(base: str, client_ca: trustme.CA, serving_ca: trustme.CA) -> float:
    """lunettes_audit_records_read_total over mutual TLS."""
    context = ssl.create_default_context()
    serving_ca.configure_trust(context)
    client_ca.issue_cert("prometheus").configure_cert(context)
    text = httpx.get(f"{base}/metrics", verify=context, timeout=10).text
    found = re.search(r"^lunettes_audit_records_read_total (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0
