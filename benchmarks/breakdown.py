"""Where a replay's work goes: the pipeline's parts added one at a time, each measured
against the parsing floor, in instructions (valgrind) or in CPU seconds.

    python3 benchmarks/breakdown.py LOG                    # instructions, 2 valgrinds at once
    python3 benchmarks/breakdown.py LOG --cpu --repeat 3   # CPU seconds (best of 3) instead
    python3 benchmarks/breakdown.py LOG --lines 30000      # the first 30,000 lines of LOG

LOG: e.g. ``benchmarks/.cache/rr-100000-*.jsonl`` (written by ``benchmarks/run.py``).
Each part includes the ones above it:

    floor      read every line and orjson-decode it (what run.py calls the floor)
    source     the file source: read, peek and route every line, a record for each
               (the lines about Pods still undecoded: they are decoded late)
    chain      + the processors before the fold: clock, dedupe, bodies, reorder, decode
    fold       + the fold into HyperEvents and Pod timelines
    analyzers  + the analyzer DAG and the pod record of every finished Pod
    store      + the SQLite store

Instructions are counted for the whole process, so the interpreter, the imports and the
pipeline's construction (``start``) are measured alone and subtracted; CPU seconds are
taken around the part only. Ratios to the floor are printed for CPU seconds only: under
valgrind orjson runs without the vector instructions it uses on the machine, so its count
says nothing of its time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from callgrind import instructions

from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.processors.base import Run, decodes_late
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource

PARTS = ("floor", "source", "chain", "fold", "analyzers", "store")


def measure(part: str, path: str, db: str) -> float:
    """Run one part over ``path`` (``start``: only build what the parts build) and return
    its CPU seconds."""
    data = {**load_config(DEFAULT_CONFIG_DIR), "sources": {},
            "sinks": {"sqlite": {"path": db}} if part == "store" else {}}
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data, env={})
    source = FileSource([path], decode_late=decodes_late(pipeline.processors))
    work: dict[str, Callable[[], Any]] = {
        "start": lambda: None,
        "floor": lambda: _floor(path),
        "source": lambda: _drain(source),
        "chain": lambda: _drain(_chain(pipeline.processors[:-1], source)),
        "fold": lambda: _fold_only(pipeline, source),
        "analyzers": lambda: pipeline.run(source),
        "store": lambda: pipeline.run(source),
    }
    began = time.process_time()
    work[part]()
    spent = time.process_time() - began
    pipeline.shutdown()
    return spent


def _floor(path: str) -> None:
    with open(path, "rb") as lines:
        for line in lines:
            orjson.loads(line)


def _drain(items: Any) -> None:
    for _ in items:
        pass


def _chain(processors: list[Any], source: FileSource) -> Any:
    """The records ``processors`` pass on (the processors before the fold)."""
    run = Run(Counter(), BadRecords(), lambda timeline, event: False)
    items = iter(source)
    for processor in processors:
        items = processor.process(items, run)
    return items


def _fold_only(pipeline: Any, source: Any) -> None:
    """The whole chain with the fold, but no analyzer runs: each finished timeline's
    record is a stand-in."""
    pipeline.record_of = lambda timeline: SimpleNamespace(outcome="")
    pipeline._export = lambda batch: batch.clear()
    pipeline.run(source)


def _child(part: str, path: str, cpu: bool) -> float:
    """One part in a fresh process: its CPU seconds, or (``cpu`` False) its instructions."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [__file__, "--measure", part, "--path", path, "--db", f"{tmp}/lunettes.db"]
        if not cpu:
            return float(instructions(args))
        out = subprocess.run([sys.executable, *args], check=True, capture_output=True,
                             text=True).stdout
        return float(json.loads(out.strip().splitlines()[-1])["cpu_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", nargs="?")
    parser.add_argument("--lines", type=float, default=0,
                        help="measure the first N lines of LOG (default: all)")
    parser.add_argument("--cpu", action="store_true",
                        help="CPU seconds of each part instead of instructions")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each part, the lowest kept (default 1)")
    parser.add_argument("--measure", choices=("start", *PARTS), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps({"cpu_seconds": measure(args.measure, args.path, args.db)}))
        return
    if not args.log:
        parser.error("LOG is required")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.log
        if args.lines:
            path = f"{tmp}/first.jsonl"
            with open(args.log, "rb") as src, open(path, "wb") as out:
                out.writelines(islice(src, int(args.lines)))
        with open(path, "rb") as lines:
            count = sum(1 for _ in lines)
        parts = PARTS if args.cpu else ("start", *PARTS)
        runs = [part for part in parts for _ in range(args.repeat)]
        workers = 1 if args.cpu else min(2, os.cpu_count() or 1)  # timing runs one at a time
        with ThreadPoolExecutor(workers) as pool:
            figures = list(pool.map(lambda part: _child(part, path, args.cpu), runs))
    best = {part: min(figures[i] for i, p in enumerate(runs) if p == part) for part in parts}
    report(best, count, args.cpu, args.log)


def report(best: dict[str, float], lines: int, cpu: bool, log: str) -> None:
    """A table: each part's cumulative cost and what it adds, in floors (CPU seconds only)
    and as a share of the replay with the store."""
    start = best.get("start", 0.0)
    floor, whole = best["floor"] - start, best["store"] - start
    unit, scale = ("CPU s", 1.0) if cpu else ("G instr.", 1e-9)
    print(f"{Path(log).name}: {lines:,} lines, {'CPU seconds' if cpu else 'instructions'}"
          f"{'' if cpu else f' (start {start * scale:.2f} G subtracted)'}")
    print(f"{'part':<10} {unit:>9} {'adds':>9} {'share':>6}"
          + (f" {'x floor':>8} {'adds x floor':>13}" if cpu else ""))
    previous = 0.0
    for part in PARTS:
        total = best[part] - start
        added = total - previous
        share = f"{added / whole:6.1%}" if part != "floor" else f"{'':6}"
        print(f"{part:<10} {total * scale:9.2f} {added * scale:9.2f} {share}"
              + (f" {total / floor:8.2f} {added / floor:13.2f}" if cpu else ""))
        if part != "floor":
            previous = total
    if cpu:
        print(f"ratio to the floor with the store: {floor / whole:.3f}")


if __name__ == "__main__":
    main()
