"""What lunettes writes is the owner's alone (mode 0600), and every HTTP answer carries
the security headers."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import lunettes
from lunettes.cli.main import main
from lunettes.pipeline import DEFAULT_CONFIG_DIR
from lunettes.sinks.spool import DiskSpool

SAMPLE = Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[int]:
    """The most permissive umask a user may have: files would be 0666 by default."""
    old = os.umask(0)
    yield old
    os.umask(old)


def test_store_jsonl_and_openmetrics_files_are_created_0600(tmp_path: Path,
                                                            open_umask: int) -> None:
    pytest.importorskip("prometheus_client", reason="needs the prometheus extra")
    store, metrics = tmp_path / "store.db", tmp_path / "backfill.om"
    config = tmp_path / "config"
    shutil.copytree(DEFAULT_CONFIG_DIR, config)
    pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
    pipeline["sinks"] = {"sqlite": {"path": str(store)},
                         "jsonl": {"path": str(tmp_path / "out.jsonl")}}
    (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    assert main(["replay", "--format", "none", "--config", str(config), "--openmetrics",
                 str(metrics), str(SAMPLE)]) == 0
    written = [store, tmp_path / "out.jsonl", metrics]
    assert all(p.stat().st_size > 0 for p in written)
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
    # SQLite gives its -wal and -shm files the store's mode (while a connection is open)
    db = sqlite3.connect(store)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (x)")
    side = [p for p in tmp_path.iterdir() if p.name.startswith("store.db-")]
    assert side and all(mode(p) == 0o600 for p in side)
    db.close()


def test_spool_files_and_directory_are_private(tmp_path: Path, open_umask: int) -> None:
    spool = DiskSpool(tmp_path / "spool" / "es", max_bytes=1 << 20)
    spooled, dropped = spool.append([{"a": 1}])
    assert spooled is not None and spooled.count == 1 and dropped.count == 0
    files = list((tmp_path / "spool" / "es").iterdir())
    assert files and all(mode(p) == 0o600 for p in files)
    assert mode(tmp_path / "spool" / "es") == 0o700


def test_every_answer_has_the_security_headers() -> None:
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from lunettes.api.app import create_app

    client = TestClient(create_app(CollectorRegistry()))
    csp = None
    for path in ("/", "/web/app.js", "/api/v1/pods", "/metrics", "/healthz", "/docs",
                 "/openapi.json", "/no/such/page"):
        response = client.get(path)
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        assert headers["x-frame-options"] == "DENY", path
        policy = dict(d.strip().split(" ", 1) for d in
                      headers["content-security-policy"].split(";"))
        assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"
        assert "unsafe-inline" not in policy["script-src"] and \
            "unsafe-eval" not in policy["script-src"]
        if path == "/":
            csp = policy
            assert policy["script-src"] == "'self'"
        if path == "/docs":  # Swagger UI's one inline script, allowed by its hash only
            scripts = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
            digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
            assert len(scripts) == 1 and policy["script-src"] == f"'self' 'sha256-{digest}'"
    assert csp is not None
    page = client.get("/").text
    assert "<script>" not in page and " style=" not in page and " on" + "click" not in page
