"""Helpers of the API tests: a ``lunettes serve`` subprocess on a free port, and what the
pipeline makes of a log in process (the answers the API must give).

Waits poll a condition with a bounded deadline, never sleep for a fixed time.
"""

from __future__ import annotations

import gzip
import math
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson

from lunettes.model.record import PodRecord
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sinks.memory import InMemorySink
from lunettes.sources.files import FileSource

SAMPLE = Path(__file__).resolve().parents[1] / "lunettes" / "data" / "sample-audit.jsonl.gz"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout_s: float = 60.0) -> T:
    """Poll ``check`` until it returns something other than None/False, or fail."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last is not None and last is not False:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


@contextmanager
def serve(args: list[str], cwd: Path, log_name: str = "serve.log",
          env: dict[str, str] | None = None, ready: bool = True) -> Iterator[str]:
    """``lunettes serve --port 0 ARGS`` on 127.0.0.1; yields its base URL once it listens
    (and, with ``ready``, once /readyz answers 200: the input is in the store)."""
    log = cwd / log_name
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lunettes.cli.main", "serve",
                                 "--port", "0", *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, env=env)
    try:
        def listening() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/metrics",
                              log.read_text())
            return found[1] if found else None

        base = wait_for(listening, "lunettes serve to listen", 90)
        if ready:
            headers = {}
            if env and env.get("LUNETTES_API_TOKEN"):
                headers["Authorization"] = f"Bearer {env['LUNETTES_API_TOKEN']}"
            wait_for(lambda: httpx.get(f"{base}/readyz", headers=headers).status_code == 200,
                     "the input to be read", 120)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def replay(paths: list[str]) -> dict[str, PodRecord]:
    """What the pipeline makes of ``paths`` with the default configuration, by UID."""
    sink = InMemorySink()
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR,
                                    {**load_config(DEFAULT_CONFIG_DIR), "sinks": {}},
                                    extra_sinks=[sink])
    pipeline.run(FileSource(paths))
    return dict(sink.by_uid)


def sample_lines() -> list[bytes]:
    return gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)


@contextmanager
def running(data: dict[str, Any], env: dict[str, str] | None = None) -> Iterator[Pipeline]:
    """The pipeline of ``data`` reading its sources on a thread until the block ends
    (stopped, joined, shut down; what its run raised fails the test)."""
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data, env)
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
        thread.join(60)
        pipeline.shutdown()
    assert not failed, failed


def event_lists(lines: list[bytes], per_batch: int, tail: int = 0) -> list[bytes]:
    """The lines as kube-apiserver's batch webhook backend POSTs them: EventLists of
    ``per_batch`` events, the last ``tail`` lines one per batch (as its batch wait cuts
    them when events are far apart)."""
    items = []
    for line in lines:
        item = orjson.loads(line)
        del item["kind"], item["apiVersion"]
        items.append(item)
    head = len(items) - tail
    batches = [items[i:min(i + per_batch, head)] for i in range(0, head, per_batch)]
    batches += [[item] for item in items[head:]]
    return [orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                          "metadata": {}, "items": batch}) for batch in batches]


def rename_pod(lines: list[bytes], old: str, new: str) -> list[bytes]:
    """The log with every mention of the Pod name ``old`` made ``new`` (a reused name)."""
    pattern = re.compile(rb"(?<![\w.-])" + re.escape(old.encode()) + rb"(?![\w.-])")
    return [pattern.sub(new.encode(), line) for line in lines]


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def close(got: Any, want: Any) -> bool:
    """Equal, floats within 1e-12 relative (numpy and SQL interpolate a percentile with a
    different order of operations)."""
    if isinstance(got, float) and isinstance(want, float):
        return math.isclose(got, want, rel_tol=1e-12)
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(close(got[k], want[k]) for k in got)
    if isinstance(got, list | tuple) and isinstance(want, list | tuple):
        return len(got) == len(want) and all(map(close, got, want))
    return bool(got == want)
