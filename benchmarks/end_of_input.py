"""Peak memory when the input ends with many Pods in flight.

    python3 benchmarks/end_of_input.py                  # 200,000 Pods in flight
    python3 benchmarks/end_of_input.py --pods 20000

Writes an audit log of Pod creations only (a generator below: one RequestResponse
``create`` per Pod, a tenth of a second apart, so none has timed out when the input ends)
into a temporary directory, then replays it in a fresh subprocess into a SQLite store, as
``lunettes replay LOG --store DB --format none`` does. It prints the resident memory when
the last record was read (the in-flight state) and the peak over the whole run (which
includes turning every Pod still in flight into a pod record and storing it), in MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
        f".{int(seconds % 1 * 1e6):06d}Z"


def creations(n: int) -> Iterator[str]:
    """``n`` Pod creations, 0.1 s apart: JSON lines of audit events."""
    for i in range(n):
        now = T0 + i / 10
        name, namespace = f"web-{i:07d}", f"ns-{i % 50:02d}"
        pod = {"kind": "Pod", "apiVersion": "v1",
               "metadata": {"name": name, "namespace": namespace,
                            "uid": str(uuid.UUID(int=i + 1, version=4)),
                            "creationTimestamp": _stamp(now)[:19] + "Z",
                            "labels": {"app": "web"},
                            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f",
                                                 "controller": True, "uid": "x"}]},
               "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}],
                        "schedulerName": "default-scheduler"},
               "status": {"phase": "Pending"}}
        yield json.dumps({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": str(uuid.UUID(int=(1 << 64) + i, version=4)),
            "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/{namespace}/pods",
            "verb": "create",
            "user": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "objectRef": {"resource": "pods", "namespace": namespace, "name": name,
                          "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 201}, "responseObject": pod,
            "requestReceivedTimestamp": _stamp(now), "stageTimestamp": _stamp(now + 0.002),
        }, separators=(",", ":"))


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure(log: str, store: str) -> None:
    """In the subprocess: replay ``log`` into ``store``; print the two figures as JSON."""
    sys.path.insert(0, str(ROOT))
    from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
    from lunettes.sources.files import FileSource

    data = {**load_config(DEFAULT_CONFIG_DIR), "sinks": {"sqlite": {"path": store}}}
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data)
    at_end: list[float] = []

    def records() -> Iterator[object]:
        yield from FileSource([log])
        at_end.append(_rss_mb())

    began = time.perf_counter()
    try:
        stats = pipeline.run(records())  # type: ignore[arg-type]
    finally:
        pipeline.shutdown()
    print(json.dumps({"pods": stats["pods_final"], "in_flight_mb": at_end[0],
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - began}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=200_000)
    parser.add_argument("--measure", nargs=2, metavar=("LOG", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(*args.measure)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "in-flight.jsonl"
        with open(log, "w") as out:
            for line in creations(args.pods):
                out.write(line + "\n")
        size_mb = log.stat().st_size / 2**20
        result = subprocess.run(
            [sys.executable, __file__, "--measure", str(log), str(Path(tmp) / "pods.db")],
            capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{figures['pods']} Pods in flight at the end of the input "
          f"({size_mb:.0f} MB log): "
          f"RSS {figures['in_flight_mb']:.0f} MB when the input ended, "
          f"peak {figures['peak_mb']:.0f} MB, {figures['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
