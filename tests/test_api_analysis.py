"""``GET /api/v1/analysis/delivery``: the delivery analysis over the store the API reads;
``GET /api/v1/analysis/apiserver``: the load analysis of the served audit files.

The truth is the delivery simulator's injected regressions (their intervals and the
attributes every slowed stage shares), written into a SQLite store as pod records; the
answers come from the API in process (FastAPI's test client over a real SQLiteStore).
"""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from api_server import SAMPLE

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("statsmodels", reason="needs the analyze extra")
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from lunettes.api.app import create_app
from lunettes.api.load_report import LoadReports
from lunettes.api.routes import ApiSettings
from lunettes.api.store import SQLiteStore
from lunettes.apiserver import MAX_INTERVALS
from lunettes.model.times import format_time, parse_time
from lunettes.simulate.delivery_regressions import _START_S, generate
from lunettes.store.sqlite_schema import COLUMNS, ensure_schema, row_of

SEED = 2
INTERVAL_S = 300


def write_store(path: Path, records: list[dict[str, Any]]) -> Path:
    """The records as the SQLite sink stores them (one row each)."""
    with sqlite3.connect(path) as db:
        ensure_schema(db)
        db.executemany(f"INSERT INTO pods ({', '.join(COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(COLUMNS))})",
                       [row_of({"partial": False, "owner_name": "", **r}) for r in records])
    db.close()
    return path


def client_over(path: Path | None, **settings: Any) -> TestClient:
    store = SQLiteStore(path) if path is not None else None
    return TestClient(create_app(CollectorRegistry(),
                                 api=ApiSettings(store=store, **settings)))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]],
                                                                 list[Any]]:
    records, regressions = generate(SEED, interval_s=INTERVAL_S)
    path = write_store(tmp_path_factory.mktemp("analysis") / "store.db", records)
    return path, records, regressions


def test_delivery_analysis_names_the_injected_regressions(simulated: Any) -> None:
    path, records, regressions = simulated
    answer = client_over(path).get("/api/v1/analysis/delivery")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["read"] == len(records) and not body["truncated"]
    assert body["pods"] == len(records) and body["interval_s"] == INTERVAL_S
    found = body["regressions"]
    assert found
    for regression in regressions:  # each injection: a window over it, its culprit named
        lo = (_START_S + regression.start * INTERVAL_S) * 1_000_000
        hi = (_START_S + regression.end * INTERVAL_S) * 1_000_000
        over = [w for w in found if parse_time(w["start"]) < hi and lo < parse_time(w["end"])]
        assert over, (regression, [(w["start"], w["end"]) for w in found])
        best = max(over, key=lambda w: w["score"])
        assert best["culprits"][0]["attributes"].items() <= regression.shared.items()
        assert best["mean_s"] > best["expected_mean_s"]


def test_filters_and_limit_bound_the_pods_read(simulated: Any) -> None:
    path, records, _ = simulated
    client = client_over(path, analysis_limit=1000)
    oldest = sorted(records, key=lambda r: (parse_time(r["created"]), r["uid"]))[:100]
    body = client.get("/api/v1/analysis/delivery", params={"limit": 100}).json()
    assert body["read"] == 100 and body["truncated"]
    assert body["start"] <= oldest[0]["created"] and body["pods"] == sum(
        1 for r in oldest if r.get("duration_s") is not None)
    capped = client.get("/api/v1/analysis/delivery").json()  # the server's ceiling
    assert capped["read"] == 1000 and capped["truncated"]
    client = client_over(path)
    ml = client.get("/api/v1/analysis/delivery", params={"namespace": "ml"}).json()
    assert ml["read"] == sum(1 for r in records if r["namespace"] == "ml")
    since = parse_time(records[len(records) // 2]["created"])
    later = client.get("/api/v1/analysis/delivery",
                       params={"since": format_time(since)}).json()
    assert later["read"] == sum(1 for r in records if parse_time(r["created"]) >= since)
    assert later["since"] == format_time(since)


def test_bad_parameters_answer_400_and_no_store_503(simulated: Any, tmp_path: Path) -> None:
    path, records, _ = simulated
    client = client_over(path, analysis_limit=1000)
    for params, detail in (
            ({"since": "2026-02-02T00:00:00Z", "until": "2026-02-01T00:00:00Z"}, "since:"),
            ({"limit": 1001}, "limit: at most 1000"),
            ({"since": "9999-12-31T23:59:59-05:00"}, "since: out of range")):
        answer = client.get("/api/v1/analysis/delivery", params=params)
        assert answer.status_code == 400 and answer.json()["detail"].startswith(detail), (
            params, answer.text)
    assert client.get("/api/v1/analysis/delivery",
                      params={"threshold": 0}).status_code == 422
    # Two Pods days apart in one-second intervals: a series too long to compute.
    late = {**records[0], "uid": "late", "created": format_time(
        parse_time(records[0]["created"]) + (MAX_INTERVALS + 10) * 1_000_000)}
    wide = write_store(tmp_path / "wide.db", [records[0], late])
    answer = client_over(wide).get("/api/v1/analysis/delivery", params={"interval_s": 1})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("interval_s:")
    assert client_over(wide).get("/api/v1/analysis/delivery").status_code == 200
    answer = client_over(None).get("/api/v1/analysis/delivery")
    assert answer.status_code == 503 and "no store" in answer.json()["detail"]


def test_an_empty_store_answers_an_empty_analysis(tmp_path: Path) -> None:
    body = client_over(write_store(tmp_path / "empty.db", [])).get(
        "/api/v1/analysis/delivery").json()
    assert body["read"] == 0 and body["pods"] == 0 and body["regressions"] == []
    assert body["start"] is None and body["series"]["pods"] == []


def test_apiserver_analysis_is_kept_until_a_served_file_changes(
        tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from lunettes.cli.main import main

    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    log = tmp_path / "audit.jsonl"
    log.write_bytes(b"".join(lines[:len(lines) // 2]))
    client = client_over(None, load=LoadReports([str(log)]))
    first = client.get("/api/v1/analysis/apiserver", params={"top": 5}).json()
    computed_at = first.pop("computed_at")
    assert main(["analyze", "apiserver", str(log), "--top", "5", "--format", "json"]) == 0
    assert first == orjson.loads(capsysbinary.readouterr().out)  # what the CLI prints
    assert first["requests"] > 0

    log.write_bytes(b"".join(lines))
    kept = client.get("/api/v1/analysis/apiserver", params={"top": 5}).json()
    assert kept["computed_at"] == computed_at and kept["requests"] == first["requests"]
    again = client.get("/api/v1/analysis/apiserver", params={"refresh": True}).json()
    assert again["computed_at"] > computed_at and again["requests"] > first["requests"]
    same = client.get("/api/v1/analysis/apiserver", params={"refresh": True}).json()
    assert same["computed_at"] == again["computed_at"]  # unchanged files: not recomputed

    answer = client_over(None).get("/api/v1/analysis/apiserver")
    assert answer.status_code == 404 and "no audit files" in answer.json()["detail"]
