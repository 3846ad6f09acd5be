"""Cost of the API server load analysis: against a replay of the same log, and its memory
on 10^6 requests from 10^5 distinct userAgents.

    python3 benchmarks/apiserver_load.py                 # 10^6 records, 10^5 agents
    python3 benchmarks/apiserver_load.py --records 1e5   # quicker
    python3 benchmarks/apiserver_load.py --skip-many --instructions   # + valgrind counts

Each measurement runs in a fresh subprocess, so its peak RSS is its own; times are CPU
seconds of that process (user + system: the figures a loaded machine disturbs least),
imports included. ``replay`` is ``lunettes replay --no-store --format none`` on the
simulated traffic (lunettes.simulate.apiserver_traffic); ``replay --apiserver-load`` the
same with the analysis inside the stream (series, tables and Prometheus counts);
``analysis`` reads the same file into the series and tables apart (the work ``lunettes
analyze apiserver`` does before its STL and drilldown, which cost the same whatever the
log's size; the same RequestStream); ``many agents`` feeds generated lines with 10^5
distinct userAgents straight into the analysis.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from callgrind import instructions

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _write_traffic(path: Path, intervals: int) -> int:
    from lunettes.simulate.apiserver_traffic import generate

    lines = 0
    with path.open("wb") as out:
        for line in generate(1, intervals=intervals, nodes=10).lines():
            out.write(line)
            lines += 1
    return lines


def measure(kind: str, path: str, records: int, agents: int) -> dict[str, float]:
    """One measurement, in this process."""
    start = time.perf_counter()
    if kind in ("replay", "stream"):
        from lunettes.cli.main import main

        main(["replay", path, "--no-store", "--format", "none",
              *(["--apiserver-load"] if kind == "stream" else [])])
    elif kind == "analysis":
        from lunettes.apiserver.stream import RequestStream

        analysis = RequestStream()
        analysis.read([path])
        analysis.series()
    else:  # many agents: 10^5 distinct clients over ``records`` requests, one per 3.6 ms
        from lunettes.apiserver.stream import RequestStream
        from lunettes.model.times import format_time

        stream = RequestStream()
        base = 1_772_000_000_000_000
        template = ('{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata",'
                    '"auditID":"00000000-0000-0000-0000-%012d","stage":"ResponseComplete",'
                    '"requestURI":"/api/v1/namespaces/ns-%d/pods/p-%d","verb":"get",'
                    '"user":{"username":"user-%d"},"userAgent":"agent-%d/1.0",'
                    '"objectRef":{"resource":"pods","namespace":"ns-%d","name":"p-%d",'
                    '"apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},'
                    '"requestReceivedTimestamp":"%s","stageTimestamp":"%s"}\n')
        for i in range(records):
            at = base + i * 3600
            line = template % (i, i % 500, i, i % agents, i % agents, i % 500, i,
                               format_time(at), format_time(at + 2000))
            stream.add_line(line.encode())
        stream.series()
    return {"seconds": _cpu_s(), "wall_s": time.perf_counter() - start, "rss_mb": _rss_mb()}


def _run(kind: str, path: str, records: int, agents: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--path", path,
         "--records", str(records), "--agents", str(agents)],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _instructions(path: str, flags: list[str]) -> int:
    """Instructions of a replay (see :mod:`callgrind`)."""
    return instructions(["-m", "lunettes.cli.main", "replay", path, "--no-store", "--format",
                         "none", *flags])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=float, default=1e6)
    parser.add_argument("--agents", type=float, default=1e5)
    parser.add_argument("--intervals", type=int, default=360,
                        help="intervals of simulated traffic for the replay comparison")
    parser.add_argument("--log", help="measure the replays on this audit log instead of "
                                      "simulated traffic (e.g. ../shared/data/real/"
                                      "perfspec-kubeadm-metadata.jsonl.gz)")
    parser.add_argument("--repeat", type=int, default=7,
                        help="runs of each replay measurement (the best is kept)")
    parser.add_argument("--skip-many", action="store_true",
                        help="leave out the 10^5 userAgents measurement")
    parser.add_argument("--instructions", action="store_true",
                        help="also count the instructions of the two replays under valgrind "
                             "(minutes; deterministic where CPU time is noisy)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    records, agents = int(args.records), int(args.agents)
    if args.measure:
        print(json.dumps(measure(args.measure, args.path, records, agents)))
        return
    if args.log:
        path = Path(args.log)
        with (gzip.open(path) if path.suffix == ".gz" else path.open("rb")) as log:
            lines = sum(1 for _ in log)
    else:
        CACHE.mkdir(exist_ok=True)
        path = CACHE / f"apiserver-traffic-{args.intervals}.jsonl"
        lines = _write_traffic(path, args.intervals)
    best: dict[str, dict[str, float]] = {}
    pairs = []  # stream / replay of runs side by side
    for _ in range(args.repeat):  # interleaved, best of each: a loaded machine's noise
        seconds = {}
        for kind in ("replay", "stream", "analysis"):
            got = _run(kind, str(path), records, agents)
            seconds[kind] = got["seconds"]
            if kind not in best or got["seconds"] < best[kind]["seconds"]:
                best[kind] = got
        pairs.append(seconds["stream"] / seconds["replay"])
    replay, stream, analysis = best["replay"], best["stream"], best["analysis"]
    print(f"{path.name}: {lines} lines ({path.stat().st_size / 1e6:.1f} MB), CPU "
          f"seconds, best of {args.repeat}")
    for name, got in (("replay", replay), ("replay --apiserver-load", stream),
                      ("analysis apart", analysis)):
        print(f"  {name:24} {got['seconds']:6.2f} s  {got['seconds'] / lines * 1e6:6.1f} "
              f"us/line  peak RSS {got['rss_mb']:.0f} MB")
    print(f"  replay --apiserver-load / replay: {stream['seconds'] / replay['seconds']:.2f}x "
          f"(best of each; run by run: median {statistics.median(pairs):.2f}x, "
          f"{min(pairs):.2f}x to {max(pairs):.2f}x)")
    ratio = (replay["seconds"] + analysis["seconds"]) / replay["seconds"]
    print(f"  replay + analysis apart / replay: {ratio:.2f}x")
    if args.instructions:
        with ThreadPoolExecutor(2) as pool:  # one valgrind per core
            off, on = pool.map(lambda flags: _instructions(str(path), flags),
                               ([], ["--apiserver-load"]))
        print(f"  instructions (valgrind): replay {off / 1e9:.2f} G, --apiserver-load "
              f"{on / 1e9:.2f} G: {on / off:.2f}x")
    if args.skip_many:
        return
    many = _run("many", str(path), records, agents)
    print(f"{records} requests from {agents} distinct userAgents: {many['seconds']:.1f} s "
          f"({many['seconds'] / records * 1e6:.1f} us/request), peak RSS "
          f"{many['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
