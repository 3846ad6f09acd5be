"""OTLP encoding cost: pod records to the bytes the OTLP sink sends, per Pod.

    python3 benchmarks/otlp_encode.py                       # the bundled sample
    python3 benchmarks/otlp_encode.py benchmarks/.cache/rr-100000-*.jsonl --repeat 10

Replays the logs (default: the bundled sample) through the default pipeline once, keeps
the pod records, then times, in CPU seconds, turning them into OTLP export requests of
``--batch-size`` Pods as the sink does (no network). The fastest of ``--repeat`` rounds
counts. Prints Pods, spans, bytes, µs per Pod and spans per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lunettes.model.record import PodRecord  # noqa: E402
from lunettes.model.spans import pod_trace  # noqa: E402
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config  # noqa: E402
from lunettes.sinks.otlp_encode import OTLPEncoder  # noqa: E402
from lunettes.sources.files import FileSource  # noqa: E402

SAMPLE = ROOT / "lunettes" / "data" / "sample-audit.jsonl.gz"


def records_of(paths: list[str]) -> list[PodRecord]:
    """The pod records of a replay of ``paths`` with the default configuration."""
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR,
                                    {**load_config(DEFAULT_CONFIG_DIR), "sinks": {}})
    records: list[PodRecord] = []
    pipeline.run(FileSource(paths), on_record=records.append)
    return records


def encoder(batch_size: int) -> Callable[[list[PodRecord]], tuple[int, int]]:
    """A function encoding records into requests as the sink does: (spans, bytes)."""
    resource_spans = OTLPEncoder().resource_spans

    def encode(records: list[PodRecord]) -> tuple[int, int]:
        spans = size = 0
        for i in range(0, len(records), batch_size):
            chunk = []
            for record in records[i:i + batch_size]:
                trace = pod_trace(record)
                if trace is not None:
                    chunk.append(resource_spans(trace))
                    spans += len(trace.spans)
            size += len(b"".join(chunk))
        return spans, size

    return encode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("paths", nargs="*", default=[str(SAMPLE)], help="audit logs")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the fastest counts")
    parser.add_argument("--batch-size", type=int, default=100, help="Pods per request")
    args = parser.parse_args(argv)

    records = records_of(args.paths)
    if not records:
        parser.error("the logs hold no Pod")
    encode = encoder(args.batch_size)
    best = float("inf")
    spans = size = 0
    for _ in range(max(1, args.repeat)):
        began = time.process_time()
        spans, size = encode(records)
        best = min(best, time.process_time() - began)
    best = max(best, 1e-9)
    print(f"pods {len(records)}  spans {spans}  bytes {size}")
    print(f"{best / len(records) * 1e6:.1f} µs per Pod  {spans / best:,.0f} spans/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
