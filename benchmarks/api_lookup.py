"""API lookup latency with 100k Pods stored.

    python3 benchmarks/api_lookup.py                 # 100k records, 2000 lookups of each kind
    python3 benchmarks/api_lookup.py --pods 20000 --lookups 500
    python3 benchmarks/api_lookup.py --pods 200000 --summary-only   # the SLO summary only

Fills a temporary SQLite store (through the SQLite sink, as ``lunettes replay`` does) with
synthetic pod records: the bundled sample's records cloned under new UIDs, names,
namespaces and creation times, then times, in process (the store) and over HTTP (a real
uvicorn server on 127.0.0.1 with one keep-alive client):

- a Pod by UID, a Pod by namespace/name (latest incarnation), a search page (50 newest),
  a filtered search page (namespace + outcome), a page deep in the list (by cursor), and
  the SLO summary of one namespace.

Then the SLO summary of every stored Pod, ``--concurrency`` (20) calls at once, in
process: the row-by-row summary (``slo_rows`` + ``summarize``, the first API), the summary
in SQL computed by every call (``_slo_summary``, the API before the cache), and the API's
``slo_summary`` now (computed once per write of the store, once for the calls that ask at
the same time): right after a write (each round: one record written, then the calls), and
on a store that did not change. Each prints the latency p50/p99 and the peak RSS growth
while it ran.

Prints p50/p99 (milliseconds) per lookup. Stores nothing; the temporary store is removed.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lunettes.model.record import PodRecord  # noqa: E402
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config  # noqa: E402
from lunettes.sinks.memory import InMemorySink  # noqa: E402
from lunettes.sinks.sqlite import SQLiteSink  # noqa: E402
from lunettes.sources.files import FileSource  # noqa: E402

SAMPLE = ROOT / "lunettes" / "data" / "sample-audit.jsonl.gz"
NAMESPACES = 50


def sample_records() -> list[PodRecord]:
    sink = InMemorySink()
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR,
                                    {**load_config(DEFAULT_CONFIG_DIR), "sinks": {}},
                                    extra_sinks=[sink])
    pipeline.run(FileSource([str(SAMPLE)]))
    return sink.records


def synthetic(templates: list[PodRecord], n: int, rng: random.Random) -> list[PodRecord]:
    """``n`` records cloned from ``templates``, one every 0.5 s of creation time; one in
    twenty reuses the name of an earlier Pod (a second incarnation)."""
    out: list[PodRecord] = []
    start = templates[0].created_us or 0
    for i in range(n):
        t = templates[i % len(templates)]
        shift = start + i * 500_000 - (t.created_us or start)
        name = out[rng.randrange(len(out))].name if out and i % 20 == 0 else \
            f"{t.name.rsplit('-', 1)[0]}-{i:06x}"
        namespace = out[-1].namespace if out and i % 20 == 0 else f"ns-{i % NAMESPACES:02d}"
        out.append(replace(
            t, uid=str(uuid.UUID(int=rng.getrandbits(128), version=4)), name=name,
            namespace=namespace,
            created_us=None if t.created_us is None else t.created_us + shift,
            finished_us=None if t.finished_us is None else t.finished_us + shift,
            last_seen_us=None if t.last_seen_us is None else t.last_seen_us + shift))
    return out


def timed(fn: Callable[[int], Any], n: int) -> tuple[float, float, float]:
    """(p50, p99, max) of ``n`` calls in milliseconds, after a few warm-up calls."""
    for i in range(min(20, n)):
        fn(i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return (samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            samples[-1])


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def concurrent(fn: Callable[[], Any], concurrency: int, calls: int
               ) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, peak RSS growth MiB) of ``calls`` calls of ``fn`` by
    ``concurrency`` threads at once."""
    gc.collect()
    base = rss_mb()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    samples: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            with lock:
                samples.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=worker, args=(calls // concurrency,))
               for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    samples.sort()
    return (samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            peak[0] - base)


def written_then_concurrent(fn: Callable[[], Any], sink_path: Path, record: PodRecord,
                            concurrency: int, rounds: int) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, peak RSS growth MiB) of ``rounds`` rounds of: one pod record
    written to the store (by the SQLite sink, another connection), then ``concurrency``
    calls of ``fn`` at once: the worst case of a cached answer, every call after a write."""
    gc.collect()
    base = rss_mb()
    samples: list[float] = []
    lock = threading.Lock()
    peak = base

    def call() -> None:
        t0 = time.perf_counter()
        fn()
        with lock:
            samples.append((time.perf_counter() - t0) * 1000)

    for n in range(rounds):
        sink = SQLiteSink(sink_path)
        sink.export([replace(record, uid=str(uuid.UUID(int=n + 1, version=4)))])
        sink.shutdown()
        threads = [threading.Thread(target=call) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = max(peak, rss_mb())
    samples.sort()
    return (samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            peak - base)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--summary-calls", type=int, default=60,
                        help="SLO summary calls per measurement (default: 60)")
    parser.add_argument("--summary-only", action="store_true",
                        help="only the SLO summary measurements")
    parser.add_argument("--skip-rows", action="store_true",
                        help="leave out the row-by-row summary (1.8 GiB for 200k Pods)")
    args = parser.parse_args(argv)

    import httpx
    import uvicorn
    from prometheus_client import CollectorRegistry

    from lunettes.api.app import create_app
    from lunettes.api.routes import ApiSettings
    from lunettes.api.slo_summary import summarize
    from lunettes.api.store import PodQuery, SQLiteStore

    rng = random.Random(args.seed)
    records = synthetic(sample_records(), args.pods, rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        sink = SQLiteSink(path)
        t0 = time.perf_counter()
        for i in range(0, len(records), 1000):
            sink.export(records[i:i + 1000])
        sink.shutdown()
        fill_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 2**20
        print(f"store: {len(records)} pod records, {size_mb:.0f} MiB, filled in {fill_s:.1f} s "
              f"({len(records) / fill_s:.0f} records/s)")

        store = SQLiteStore(path, timeout_s=600)
        print(f"\nSLO summary of all {len(records)} Pods, {args.concurrency} calls at once "
              f"({args.summary_calls} calls)")
        print(f"{'':<34}{'p50 ms':>11}{'p99 ms':>9}{'peak RSS +MiB':>15}")
        every = {"rows + summarize (first API)": lambda: summarize(
                     store.slo_rows(None, None, None, None, 1_000_000)[0]),
                 "in SQL, every call (before)": lambda: store._slo_summary(
                     None, None, None, None)}
        for name, fn in every.items():
            if name.startswith("rows") and args.skip_rows:
                continue
            p50, p99, rss = concurrent(fn, args.concurrency, args.summary_calls)
            print(f"{name:<34}{p50:>11.0f}{p99:>9.0f}{rss:>15.0f}")
        after_write = written_then_concurrent(
            lambda: store.slo_summary(None, None, None, None, 1_000_000), sink_path=path,
            record=records[0], concurrency=args.concurrency,
            rounds=max(1, args.summary_calls // args.concurrency))
        print(f"{'once per write, after a write':<34}{after_write[0]:>11.0f}"
              f"{after_write[1]:>9.0f}{after_write[2]:>15.0f}")
        unchanged = concurrent(lambda: store.slo_summary(None, None, None, None, 1_000_000),
                               args.concurrency, args.summary_calls)
        print(f"{'once per write, store unchanged':<34}{unchanged[0]:>11.1f}"
              f"{unchanged[1]:>9.1f}{unchanged[2]:>15.0f}")
        if args.summary_only:
            store.close()
            return 0
        picks = [records[rng.randrange(len(records))] for _ in range(args.lookups)]
        deep = store.search(PodQuery(limit=500))
        for _ in range(20):  # a cursor 10,000 Pods deep
            deep = store.search(PodQuery(limit=500, cursor=deep.next_cursor))
        cursor = deep.next_cursor
        cases: list[tuple[str, Callable[[int], Any], str]] = [
            ("pod by uid", lambda i: store.get(picks[i].uid), "/api/v1/pods/{uid}"),
            ("pod by namespace/name", lambda i: store.by_name(picks[i].namespace,
                                                              picks[i].name, 1),
             "/api/v1/namespaces/{namespace}/pods/{name}"),
            ("search page (50 newest)", lambda i: store.search(PodQuery(limit=50)),
             "/api/v1/pods?limit=50"),
            ("search namespace+outcome", lambda i: store.search(
                PodQuery(namespace=picks[i].namespace, outcome="failed", limit=50)),
             "/api/v1/pods?namespace={namespace}&outcome=failed&limit=50"),
            ("page 10,000 deep", lambda i: store.search(PodQuery(limit=50, cursor=cursor)),
             f"/api/v1/pods?limit=50&cursor={cursor}"),
            ("slo summary, 1 namespace", lambda i: store.slo_rows(
                None, None, picks[i].namespace, None, 1_000_000),
             "/api/v1/slo/summary?namespace={namespace}"),
        ]
        print(f"\n{'lookup':<28}{'store p50':>11}{'p99':>9}{'HTTP p50':>11}{'p99':>9}"
              f"{'max':>9}  (ms, {args.lookups} lookups each)")
        results: list[tuple[str, tuple[float, float, float]]] = []
        for name, fn, _ in cases:
            results.append((name, timed(fn, args.lookups if "summary" not in name
                                        else max(50, args.lookups // 20))))

        port = free_port()
        app = create_app(CollectorRegistry(), None, ApiSettings(store=SQLiteStore(path)))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False,
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            def http(template: str) -> Callable[[int], Any]:
                def call(i: int) -> None:
                    pod = picks[i]
                    url = template.format(uid=pod.uid, namespace=pod.namespace,
                                          name=pod.name)
                    response = client.get(url)
                    assert response.status_code == 200, (url, response.text[:200])
                return call

            for (name, store_times), (_, _, template) in zip(results, cases, strict=True):
                n = args.lookups if "summary" not in name else max(50, args.lookups // 20)
                p50, p99, worst = timed(http(template), n)
                print(f"{name:<28}{store_times[0]:>11.2f}{store_times[1]:>9.2f}"
                      f"{p50:>11.2f}{p99:>9.2f}{worst:>9.1f}")
        server.should_exit = True
        thread.join(10)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
