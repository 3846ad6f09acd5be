"""The SLO summary computed in SQL: the same figures as numpy and as the row-by-row
summary it replaces, a deadline per query, and 400s (never 500s) for crafted cursors and
times out of range."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from waiting import wait_until

import lunettes
from lunettes.api.slo_summary import RESULTS
from lunettes.api.store import SQLiteStore, StoreUnavailable
from lunettes.api.summary_cache import SummaryCache
from lunettes.cli.main import main
from lunettes.model.record import PodRecord
from lunettes.sinks.sqlite import SQLiteSink

pytest.importorskip("fastapi", reason="needs the serve extra")
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from lunettes.api.app import create_app
from lunettes.api.routes import ApiSettings

SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"
T0 = 1_767_225_600_000_000  # 2026-01-01


def generated(n: int, rng: random.Random) -> list[PodRecord]:
    out = []
    for i in range(n):
        outcome = rng.choice(["delivered", "completed", "failed", "timeout", "deleted"])
        result = rng.choice(RESULTS)
        platform = None if rng.random() < 0.1 else round(rng.expovariate(0.2), 6)
        total = None if platform is None else round(platform + rng.random() * 30, 6)
        out.append(PodRecord(
            uid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            namespace=f"ns-{i % 3}", name=f"p-{i}", node="n", created_us=T0 + i * 1_000_000,
            finished_us=None, outcome=outcome,
            results={"slo": {"result": result, "class": rng.choice(["standard", "batch"]),
                             "platform_s": platform, "total_s": total}}))
    return out


def expected(records: Sequence[PodRecord | SimpleNamespace]
             ) -> tuple[dict[str, Any], dict[tuple[str, str], Any]]:
    """The figures computed here from the records themselves, percentiles by numpy."""
    def figures(group: list[Any]) -> dict[str, Any]:
        results = Counter(r.results["slo"]["result"] for r in group)
        delivered = [r for r in group if r.outcome in ("delivered", "completed")]
        out: dict[str, Any] = {"count": len(group), "results": {k: results[k] for k in RESULTS},
                               "delivered": sum(r.results["slo"]["platform_s"] is not None
                                                for r in delivered)}
        for name, key in (("delivery_s", "platform_s"), ("total_s", "total_s")):
            values = [r.results["slo"][key] for r in delivered
                      if r.results["slo"][key] is not None]
            out[name] = {p: float(np.percentile(values, q)) if values else None
                         for p, q in (("p50", 50), ("p90", 90), ("p99", 99))}
        met, violated = results["met"], results["violated"]
        out["success_ratio"] = met / (met + violated) if met + violated else None
        return out
    groups: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        groups.setdefault((r.namespace, r.results["slo"]["class"]), []).append(r)
    return figures(records), {k: figures(v) for k, v in groups.items()}


def approx(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: (approx(v) if isinstance(v, dict) else
                pytest.approx(v, rel=1e-12) if isinstance(v, float) else v)
            for k, v in figures.items()}


@pytest.fixture(scope="module")
def generated_store(tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[Path, list[PodRecord]]:
    path = tmp_path_factory.mktemp("summary") / "store.db"
    records = generated(3000, random.Random(7))
    sink = SQLiteSink(path)
    sink.export(records)
    sink.shutdown()
    return path, records


def test_sql_summary_matches_numpy(generated_store: tuple[Path, list[PodRecord]]) -> None:
    path, records = generated_store
    store = SQLiteStore(path)
    overall, groups, truncated = store.slo_summary(None, None, None, None, 10)
    want_overall, want_groups = expected(records)
    assert not truncated
    assert overall == approx(want_overall)
    assert [(g["namespace"], g["slo_class"]) for g in groups] == sorted(want_groups)
    for group in groups:
        key = (group.pop("namespace"), group.pop("slo_class"))
        assert group == approx(want_groups[key])
    # a window and a namespace: the Pods created in [T0+1000 s, T0+2000 s) of ns-1
    window = [r for r in records if r.namespace == "ns-1"
              and T0 + 1000 * 10**6 <= (r.created_us or 0) < T0 + 2000 * 10**6]
    overall, _, _ = store.slo_summary(T0 + 1000 * 10**6, T0 + 2000 * 10**6, "ns-1", None, 1)
    assert overall == approx(expected(window)[0])


def test_sql_summary_matches_numpy_over_the_samples_stored_records(tmp_path: Path) -> None:
    """The sample's store: the summary equals the figures numpy computes from the records
    read back as JSON with plain sqlite3 (the Pods with an SLO verdict)."""
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["replay", "--format", "none", "--store", str(tmp_path / "s.db"),
                     str(SAMPLE)]) == 0
    db = sqlite3.connect(tmp_path / "s.db")
    stored = [json.loads(row[0]) for row in db.execute("SELECT record FROM pods")]
    db.close()
    judged = [SimpleNamespace(namespace=r["namespace"], outcome=r["outcome"],
                              results={"slo": r["slo"]})
              for r in stored if (r.get("slo") or {}).get("result")]
    overall, groups, _ = SQLiteStore(tmp_path / "s.db").slo_summary(None, None, None, None, 1)
    want_overall, want_groups = expected(judged)
    assert overall == approx(want_overall) and overall["count"] == len(judged) == 300
    assert [(g["namespace"], g["slo_class"]) for g in groups] == sorted(want_groups)


def test_concurrent_summaries_cost_one_computation_until_the_store_is_written(
        tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    records = generated(2000, random.Random(3))
    sink = SQLiteSink(path)
    sink.export(records[:1000])
    store = SQLiteStore(path)
    computed: list[float] = []
    arrived = [0]
    compute = store._slo_summary

    def counted(*args: Any) -> Any:  # the real computation, counted; it waits until
        wait_until(lambda: arrived[0] == 20, 30, "every call")  # all 20 calls are made
        computed.append(time.monotonic())
        return compute(*args)

    store._slo_summary = counted  # type: ignore[method-assign]
    answers: list[Any] = []

    def call() -> None:
        arrived[0] += 1
        answers.append(store.slo_summary(None, None, None, None, 10))

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 20 and len(computed) == 1
    want = expected(records[:1000])[0]
    assert all(overall == approx(want) for overall, _, _ in answers)
    answers[0][1][0].pop("namespace")  # a caller's copy, not the kept answer
    again = store.slo_summary(None, None, None, None, 10)
    assert len(computed) == 1 and again[1][0]["namespace"] == "ns-0"
    sink.export(records[1000:])  # another connection writes: the answer is computed again
    overall, _, _ = store.slo_summary(None, None, None, None, 10)
    assert len(computed) == 2 and overall == approx(expected(records)[0])
    sink.shutdown()
    store.close()


def test_a_failed_computation_reaches_every_waiting_call_and_is_not_kept() -> None:
    cache: SummaryCache[int] = SummaryCache(size=2)
    release = threading.Event()
    errors: list[BaseException] = []

    def failing() -> int:
        release.wait(30)
        raise StoreUnavailable("too slow")

    def call() -> None:
        try:
            cache.get("k", 1, failing)
        except StoreUnavailable as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    wait_until(lambda: ("k", 1) in cache._running, 30, "the first call")
    release.set()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 3
    assert cache.get("k", 1, lambda: 7) == 7  # computed, not the error
    assert cache.get("k", 1, lambda: 8) == 7  # kept for version 1
    assert cache.get("k", 2, lambda: 9) == 9  # a new version computes again
    for key in ("a", "b"):
        cache.get(key, 1, lambda: 0)
    assert list(cache._answers) == ["a", "b"]  # at most size answers, oldest dropped


def test_a_query_past_its_deadline_is_a_503(generated_store: tuple[Path, list[PodRecord]]
                                            ) -> None:
    path, _ = generated_store
    with pytest.raises(StoreUnavailable, match="longer than 0 s"):
        SQLiteStore(path, timeout_s=0.0).slo_summary(None, None, None, None, 1)
    client = TestClient(create_app(CollectorRegistry(), api=ApiSettings(
        store=SQLiteStore(path, timeout_s=0.0))))
    response = client.get("/api/v1/slo/summary")
    assert response.status_code == 503 and "longer than" in response.json()["detail"]


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    _cursor(["-created", [[1], "x"]]), _cursor(["-created", [{"a": 1}, "x"]]),
    _cursor(["-created", ["text", "x"]]), _cursor(["-created", [True, "x"]]),
    _cursor(["-created", [2**64, "x"]]), _cursor(["-created", [1, 2]]),
    _cursor(["-created", [1, "x", 3]]), _cursor(["-created", {"a": 1}]),
    _cursor(["created", [1, "x"]]), _cursor([1, 2, 3]), _cursor("x"), "%%%", "AAAA",
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
])
def test_a_crafted_cursor_is_a_400(generated_store: tuple[Path, list[PodRecord]],
                                   cursor: str) -> None:
    client = TestClient(create_app(CollectorRegistry(), api=ApiSettings(
        store=SQLiteStore(generated_store[0]))))
    response = client.get("/api/v1/pods", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("cursor: ")


@pytest.mark.parametrize(("params", "status"), [
    ({"since": "9999-12-31T23:59:59-14:00"}, 400),
    ({"until": "0001-01-01T00:00:00+14:00"}, 400),
    ({"since": "0001-01-01T00:00:00Z"}, 200), ({"until": "9999-12-31T23:59:59Z"}, 200),
    ({"since": "99999-01-01"}, 422), ({"since": "2026-01-01T00:00:00+25:00"}, 422),
    ({"since": "2026-02-30"}, 422),
    ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400),
])
@pytest.mark.parametrize("path", ["/api/v1/pods", "/api/v1/slo/summary"])
def test_times_out_of_range_are_refused_with_a_detail(
        generated_store: tuple[Path, list[PodRecord]], path: str, params: dict[str, str],
        status: int) -> None:
    client = TestClient(create_app(CollectorRegistry(), api=ApiSettings(
        store=SQLiteStore(generated_store[0]))))
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.json()["detail"]
