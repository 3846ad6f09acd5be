"""Every secret shape of the catalogue, planted in a simulated log's Event messages,
container waiting messages, condition and Pod status messages and rejected creates' errors,
reaches no sink: the SQLite store, JSON lines (stdout and a file), OTLP at a real receiver,
Elasticsearch (the fake), the OpenMetrics file, the run's own output, and the API."""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from secret_shapes import SHAPES

import lunettes
from lunettes.cli.main import main
from lunettes.pipeline import DEFAULT_CONFIG_DIR

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("elasticsearch", reason="needs the elasticsearch extra")
from fake_es import FakeElasticsearch
from fastapi.testclient import TestClient
from otlp_receiver import OTLPReceiver
from prometheus_client import CollectorRegistry

from lunettes.api.app import create_app
from lunettes.api.routes import ApiSettings
from lunettes.api.store import SQLiteStore

SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"
MARK = "probe-"
"""Each planted text starts with ``probe-<n>``: it shows the message went through."""


class Planter:
    """Appends the catalogue's messages, in turn, to the messages of a log."""

    def __init__(self) -> None:
        self.n = 0
        self.places: dict[str, int] = {}

    def __call__(self, holder: dict[str, Any], key: str, place: str) -> None:
        message = SHAPES[self.n % len(SHAPES)][1]
        holder[key] = f"{holder.get(key) or ''} {MARK}{self.n} {message}"
        self.n += 1
        self.places[place] = self.places.get(place, 0) + 1


def planted_log(path: Path) -> Planter:
    plant = Planter()
    out = []
    with gzip.open(SAMPLE) as f:
        for line in f:
            event = orjson.loads(line)
            ref = event.get("objectRef") or {}
            status = event.get("responseStatus") or {}
            if ref.get("resource") == "pods" and event.get("verb") == "create" and \
                    status.get("code", 0) >= 300:
                plant(status, "message", "rejected create")
            for key in ("requestObject", "responseObject"):
                body = event.get(key)
                if not isinstance(body, dict):
                    continue
                if body.get("kind") == "Event" and body.get("type") == "Warning":
                    plant(body, "message", "Event message")
                pod_status = body.get("status") if ref.get("subresource") == "status" else None
                if isinstance(pod_status, dict):
                    if pod_status.get("message"):
                        plant(pod_status, "message", "Pod status message")
                    for condition in pod_status.get("conditions") or []:
                        if condition.get("message"):
                            plant(condition, "message", "condition message")
                    for cs in pod_status.get("containerStatuses") or []:
                        waiting = (cs.get("state") or {}).get("waiting")
                        if waiting and waiting.get("message"):
                            plant(waiting, "message", "container waiting message")
            out.append(orjson.dumps(event) + b"\n")
    path.write_bytes(b"".join(out))
    return plant


def test_no_secret_reaches_any_sink_or_the_api(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    plant = planted_log(log)
    assert plant.n > 5 * len(SHAPES) and set(plant.places) == {
        "rejected create", "Event message", "Pod status message", "condition message",
        "container waiting message"}
    secrets = [secret for _, _, secret in SHAPES]
    assert all(s.encode() in log.read_bytes() for s in secrets)

    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
    es = FakeElasticsearch().start()
    receiver = OTLPReceiver().start()
    try:
        pipeline["sinks"] = {
            "sqlite": {"path": str(tmp_path / "store.db")},
            "jsonl": {"path": str(tmp_path / "records.jsonl")},
            "elasticsearch": {"hosts": [es.url], "spool_dir": str(tmp_path / "spool")},
        }
        (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
        out, err = io.BytesIO(), io.StringIO()
        text = io.TextIOWrapper(out, write_through=True)
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(err):
            rc = main(["replay", "--format", "jsonl", "--config", str(config),
                       "--otlp-endpoint", receiver.grpc_endpoint,
                       "--openmetrics", str(tmp_path / "metrics.om"), str(log)])
        text.flush()
        text.detach()
        assert rc == 0, err.getvalue()
        spans = receiver.wait_for_spans(300, timeout=60)
        outputs = {
            "stdout": out.getvalue(), "stderr": err.getvalue().encode(),
            "elasticsearch": b"\n".join(r.body for r in es.requests),
            "otlp": b"\n".join(r.request.SerializeToString() for r in receiver.requests),
        }
    finally:
        es.stop()
        receiver.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path != log:
            outputs[str(path.relative_to(tmp_path))] = path.read_bytes()
    assert {"store.db", "records.jsonl", "metrics.om"} <= set(outputs)
    assert len(spans) >= 300

    # the API over the store this run wrote
    client = TestClient(create_app(CollectorRegistry(), api=ApiSettings(
        store=SQLiteStore(tmp_path / "store.db"))))
    answers: list[bytes] = []
    cursor = None
    while True:
        page = client.get("/api/v1/pods", params={"limit": 500, **(
            {"cursor": cursor} if cursor else {})})
        answers.append(page.content)
        for item in page.json()["items"]:
            for suffix in ("", "/stages", "/diagnosis", "/slo", "/trace"):
                answers.append(client.get(f"/api/v1/pods/{item['uid']}{suffix}").content)
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    answers.append(client.get("/api/v1/slo/summary").content)
    outputs["api"] = b"\n".join(answers)

    leaks = {(where, s) for where, blob in outputs.items() for s in secrets
             if s.encode() in blob}
    assert not leaks
    # the planted messages did go through: their marks are in what every sink got
    for where in ("stdout", "records.jsonl", "elasticsearch", "otlp", "api"):
        assert outputs[where].count(MARK.encode()) > len(SHAPES), where
