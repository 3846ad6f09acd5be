"""lunettes benchmarks: throughput, memory and latency, measured against the parsing floor.

    python3 benchmarks/run.py                  # 10^5 and 10^6 events, results.json + tables
    python3 benchmarks/run.py --quick          # smoke run: 10^4 events, a few seconds
    python3 benchmarks/run.py --sizes 1e5 --workers 2 --docs docs/benchmarks.md

Simulated audit logs (``lunettes simulate``: a RequestResponse policy with a realistic
scenario mix, and the same cluster at Metadata level) are generated once into
``benchmarks/.cache/`` and reused while their parameters are unchanged. Every measurement
runs in a fresh subprocess (so peak RSS figures do not mix), pinned to one core; the OTLP
receiver runs in its own process on another core. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import json
import os
import platform
import pstats
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results.json"
RESULTS_BEGIN, RESULTS_END = "<!-- results:begin -->", "<!-- results:end -->"

# A realistic mix: mostly healthy Pods, some slow, a few failing, every scenario present.
MIX = ("healthy=0.82,slow_image_pull=0.02,slow_readiness=0.02,init_containers=0.02,"
       "readiness_gate=0.01,crash_loop=0.01,image_not_found=0.01,scheduling_slow=0.01,"
       "deleted_before_ready=0.01,oom_killed=0.005,all=0.001")
POD_RATE = 4.0          # Pods created per second of cluster time
BACKGROUND_RATE = 100.0  # other API requests per second (leases, gets, lists, watches...)
NODES = 50
TARGET_RATIO = 0.25      # end to end at least a quarter of the floor's throughput
TARGET_RATIO_PODS = 0.2  # the same on a log where every line is about a Pod
TARGET_SPEEDUP = {2: 1.8, 4: 3.5}  # --workers N against one process
TARGET_POD_BYTES = 4096  # bytes per in-flight Pod


# -- machine ------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, Python: what a reader needs to compare runs."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    ram = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    import orjson

    return {"cpu": cpu or platform.machine(), "cores": os.cpu_count() or 1,
            "ram_bytes": ram, "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "orjson": getattr(orjson, "__version__", "?"), "platform": platform.platform()}


# -- logs ---------------------------------------------------------------------------------
def _simulator_digest() -> str:
    """A digest of the simulator's sources: a changed simulator regenerates the cache."""
    digest = hashlib.sha256()
    sim = ROOT / "lunettes" / "simulate"
    for path in sorted(sim.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def log_params(kind: str, events: int) -> dict[str, Any]:
    """Simulation parameters of a benchmark log; ``kind`` is rr, metadata, pods (the rr
    cluster without other API requests: every line is about a Pod) or inflight."""
    if kind == "inflight":
        # Pods created over 10 minutes, none delivered (the kubelet admits them and then
        # nothing happens), cut at 15 minutes: all still in flight (timeout is 35 min).
        pods = events
        return {"kind": kind, "pods": pods, "seed": 11, "duration_s": 600.0, "end_s": 900.0,
                "rate": 20.0, "nodes": NODES, "policy": "requestresponse",
                "scenarios": "no_progress=1", "events": None, "sim": _simulator_digest()}
    # Enough cluster time for more than ``events`` records; the log is cut at ``events``.
    rate = 0.0 if kind == "pods" else BACKGROUND_RATE
    duration = events / (POD_RATE * 15 + rate) * 1.6
    return {"kind": kind, "pods": int(duration * POD_RATE), "seed": 7,
            "duration_s": round(duration, 1), "end_s": None, "rate": rate,
            "nodes": NODES, "policy": "metadata" if kind == "metadata" else "requestresponse",
            "scenarios": MIX, "events": events, "sim": _simulator_digest()}


def ensure_log(cache: Path, params: dict[str, Any], progress: Any = None) -> Path:
    """The cached log for ``params``, generated first when missing."""
    from lunettes.simulate import SimConfig, Simulation, parse_mix

    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    size = params["events"] if params["events"] is not None else f"{params['pods']}pods"
    path = cache / f"{params['kind']}-{size}-{key}.jsonl"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    sim = Simulation(SimConfig(
        seed=params["seed"], pods=params["pods"], duration_s=params["duration_s"],
        rate=params["rate"], nodes=params["nodes"], policy=params["policy"],
        scenarios=parse_mix(params["scenarios"]), end_s=params["end_s"]))
    limit = params["events"]
    tmp = path.with_suffix(".tmp")
    written = 0
    with open(tmp, "wb", buffering=1 << 20) as out:
        for _, line in sim.lines():
            if limit is not None and written >= limit:
                break
            out.write(line)
            out.write(b"\n")
            written += 1
            if progress is not None and written % 5000 == 0:
                progress(written)
    os.replace(tmp, path)
    meta.write_text(json.dumps({**params, "lines": written, "bytes": path.stat().st_size},
                               indent=1))
    return path


# -- child phases (each in a fresh process) -----------------------------------------------
def _rss_now() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _peak_rss() -> int:
    """This process's peak RSS. VmHWM, not getrusage: on Linux ru_maxrss survives exec, so
    a child would report the benchmark parent's peak at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _pin(cpus: str | None) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})


def _pipeline_data(args: argparse.Namespace) -> dict[str, Any]:
    from lunettes.pipeline import DEFAULT_CONFIG_DIR, load_config

    data = dict(load_config(DEFAULT_CONFIG_DIR))
    sinks: dict[str, Any] = {}
    if args.sinks in ("store", "full"):
        sinks["sqlite"] = {"path": args.db}
    if args.sinks == "full":
        sinks["otlp"] = {"endpoint": args.otlp, "batch_size": 100}
    data["sinks"] = sinks
    return data


def _pipeline(args: argparse.Namespace) -> Any:
    from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline

    return Pipeline.from_config(DEFAULT_CONFIG_DIR, _pipeline_data(args), env={})


def _decodes_late(pipeline: Any) -> bool:
    """True when the pipeline decodes records late (a checkout that predates it: False)."""
    try:
        from lunettes.processors.base import decodes_late
    except ImportError:
        return False
    return decodes_late(getattr(pipeline, "processors", []))


def phase_floor(args: argparse.Namespace) -> dict[str, Any]:
    """Read and orjson-decode every line; nothing else."""
    import orjson

    loads = orjson.loads
    lines = 0
    began, cpu = time.perf_counter(), time.process_time()
    with open(args.input, "rb") as stream:
        for raw in stream:
            loads(raw)
            lines += 1
    return {"seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu,
            "lines": lines}


def phase_decode(args: argparse.Namespace) -> dict[str, Any]:
    """The sources alone: lines -> AuditRecords (bad lines counted)."""
    from lunettes.sources.files import FileSource

    source = FileSource([args.input])
    began, cpu = time.perf_counter(), time.process_time()
    records = sum(1 for _ in source)
    return {"seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu,
            "lines": source.lines, "records": records, "bad": source.bad.total}


def phase_replay(args: argparse.Namespace) -> dict[str, Any]:
    """lunettes replay end to end: decode, fold, analyzers, sinks."""
    from lunettes.sources.files import FileSource

    pipeline = _pipeline(args)
    partition = None
    if args.part:
        from lunettes.sources.partition import Partition

        index, count = (int(x) for x in args.part.split("/"))
        partition = Partition(index, count)
    # (keywords only when they apply: a baseline checkout may predate them)
    options: dict[str, Any] = {"partition": partition} if partition else {}
    if _decodes_late(pipeline):
        options["decode_late"] = True  # as the pipeline's own sources would
    source = FileSource([args.input], **options)
    rss_before = _rss_now()
    profiler = cProfile.Profile() if args.cprofile else None
    rss_samples: list[tuple[int, int]] = []  # (records read, RSS): flat once warm?

    def sampled(records: Any) -> Any:
        for n, record in enumerate(records, 1):
            if n % 50_000 == 0:
                rss_samples.append((n, _rss_now()))
            yield record

    began, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    try:
        stats = pipeline.run(sampled(source))
    finally:
        if profiler is not None:
            profiler.disable()
        pipeline.shutdown()
    out: dict[str, Any] = {
        "seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu,
        "lines": source.lines, "rss_before_run": rss_before,
        "records": stats["records"], "pods": stats["pods_final"], "bad": source.bad.total,
        "rss_samples": rss_samples,
        "hyperevents": stats["hyperevents"],
        "outcomes": {k.split(":", 1)[1]: v for k, v in stats.items()
                     if k.startswith("outcome:")},
    }
    if profiler is not None:
        out["profile"] = _top(profiler, args.top)
    return out


def _top(profiler: cProfile.Profile, n: int) -> list[dict[str, Any]]:
    """The ``n`` functions with the most time of their own, compactly."""
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename
        marker = f"{os.sep}lunettes{os.sep}"
        if marker in filename:
            where = "lunettes/" + filename.rsplit(marker, 1)[1]
        elif filename.startswith("~") or filename == "<built-in>":
            where = ""
        name = f"{where}:{line}({func})" if where else func
        rows.append({"function": name, "calls": calls, "tottime": round(tottime, 4),
                     "cumtime": round(cumtime, 4)})
    rows.sort(key=lambda r: -r["tottime"])
    total = sum(r["tottime"] for r in rows) or 1.0
    for r in rows:
        r["share"] = round(r["tottime"] / total, 4)
    return rows[:n]


def phase_inflight(args: argparse.Namespace) -> dict[str, Any]:
    """Memory of the Folder per Pod in flight: fold a log in which no Pod finishes, then
    measure what dropping the Folder frees (tracemalloc), divided by its live Pods."""
    from lunettes.processors.dedupe import Deduplicator
    from lunettes.processors.fold import Folder
    from lunettes.processors.reorder import ReorderWindow
    from lunettes.sources.files import FileSource

    pipeline = _pipeline(args)
    stage_set = pipeline.stage_set
    stats: Counter[str] = Counter()
    dedupe = Deduplicator(stats)  # the processors' defaults, as in pipeline.yaml
    window = ReorderWindow(stats)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rss_base = _rss_now()
    folder: Any = Folder(lambda t, e: stage_set.delivered(t.spec, e), stats)
    finished = 0
    for record in FileSource([args.input]):
        if dedupe.accept(record):
            for released in window.push(record):
                folder.add(released)
                finished += len(folder.advance(released.received_us))
    for released in window.flush():
        folder.add(released)
        finished += len(folder.advance(released.received_us))
    gc.collect()
    with_folder = tracemalloc.get_traced_memory()[0]
    live = len(folder.live)
    hyperevents = sum(len(v.timeline.events) for v in folder.live.values())
    rss_with = _rss_now()
    del folder
    gc.collect()
    without = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    folder_bytes = with_folder - without
    return {"pods_in_flight": live, "pods_finished": finished, "hyperevents": hyperevents,
            "folder_bytes": folder_bytes,
            "bytes_per_pod": round(folder_bytes / live) if live else None,
            "bytes_per_hyperevent": round(folder_bytes / hyperevents) if hyperevents else None,
            "other_state_bytes": without - base,
            "rss_growth_bytes": rss_with - rss_base}


def phase_workers(args: argparse.Namespace) -> dict[str, Any]:
    """What ``lunettes replay --workers N`` runs: with N > 1 the CLI's worker orchestration
    (lunettes.cli.workers: a forkserver, N partitioned pipelines, merged reports), with 1
    the plain replay."""
    from lunettes.cli.workers import Job, run_workers
    from lunettes.pipeline import DEFAULT_CONFIG_DIR
    from lunettes.sources.files import FileSource

    began, cpu = time.perf_counter(), time.process_time()
    workers_cpu: list[float] = []
    prescan_cpu = 0.0
    if args.count == 1:
        pipeline = _pipeline(args)
        source = FileSource([args.input])
        try:
            stats = pipeline.run(source)
        finally:
            pipeline.shutdown()
        lines = source.lines
    else:
        data = _pipeline_data(args)
        report = run_workers(Job(DEFAULT_CONFIG_DIR, data, {}, [args.input], args.count))
        stats, lines = report.stats, report.lines
        workers_cpu = [round(c, 3) for c in getattr(report, "cpu_s", [])]
        prescan_cpu = round(getattr(report, "prescan_cpu_s", 0.0), 3)
    return {"seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu,
            "workers_cpu_seconds": workers_cpu, "prescan_cpu_seconds": prescan_cpu,
            "lines": lines, "records": stats["records"], "pods": stats["pods_final"]}


PHASES = {"floor": phase_floor, "decode": phase_decode, "replay": phase_replay,
          "inflight": phase_inflight, "workers": phase_workers}


def child_main(args: argparse.Namespace) -> int:
    _pin(args.cpus)
    rss_start = _rss_now()
    result = PHASES[args.phase](args)
    result["peak_rss"] = _peak_rss()
    result["rss_at_start"] = rss_start
    print(json.dumps(result))
    return 0


# -- the parent: runs phases in subprocesses ----------------------------------------------
class Runner:
    """Starts child phases, the OTLP receiver, and keeps the temporary store files."""

    def __init__(self, work: Path, cpus: list[int], pin: bool, repeat: int) -> None:
        self.work = work
        self.cpus = cpus
        self.pin = pin
        self.repeat = repeat
        self.lunettes_cpu = str(cpus[0])
        self.other_cpus = ",".join(str(c) for c in cpus[1:]) or str(cpus[0])

    def child(self, phase: str, path: Path, *extra: str, repeat: int = 1) -> dict[str, Any]:
        """Run a phase ``repeat`` times, each in a fresh process; keep the fastest run (by
        CPU time: the least disturbed by whatever else the machine does)."""
        cmd = [sys.executable, str(Path(__file__)), "--phase", phase, "--input", str(path),
               *extra]
        if self.pin:
            cmd += ["--cpus", self.lunettes_cpu]
        runs = []
        for _ in range(max(1, repeat)):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"phase {phase} failed:\n{done.stderr[-4000:]}")
            runs.append(dict(json.loads(done.stdout.strip().splitlines()[-1])))
        best = min(runs, key=lambda r: r.get("cpu_seconds", 0))
        best["runs"] = len(runs)
        return best

    def db(self, name: str) -> str:
        path = self.work / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return str(path)

    def replay(self, path: Path, sinks: str, name: str, profile: int = 0, repeat: int = 1
               ) -> dict[str, Any]:
        extra = ["--sinks", sinks, "--db", self.db(name)]
        if profile:
            extra += ["--cprofile", "--top", str(profile)]
        if sinks != "full":
            return self.child("replay", path, *extra, repeat=repeat)
        with Receiver(self.other_cpus if self.pin else None) as receiver:
            result = self.child("replay", path, *extra, "--otlp", receiver.endpoint,
                                repeat=repeat)
        result["otlp"] = receiver.result
        return result

    def workers(self, path: Path, n: int) -> dict[str, Any]:
        """``lunettes replay --workers n`` (see :func:`phase_workers`), full sinks, on all
        cores (never pinned: the workers inherit the affinity)."""
        with Receiver(None) as receiver:
            cmd = [sys.executable, str(Path(__file__)), "--phase", "workers", "--input",
                   str(path), "--sinks", "full", "--db", self.db(f"workers{n}"), "--otlp",
                   receiver.endpoint, "--count", str(n)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"workers={n} failed:\n{done.stderr[-4000:]}")
        result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
        return {"workers": n, "seconds": result["seconds"], "pods": result["pods"],
                "records": result["records"], "lines": result["lines"],
                "cpu_seconds": result.get("cpu_seconds"),
                "workers_cpu_seconds": result.get("workers_cpu_seconds", []),
                "prescan_cpu_seconds": result.get("prescan_cpu_seconds", 0.0),
                "otlp": receiver.result}


class Receiver:
    """The OTLP/gRPC receiver subprocess (benchmarks/receiver.py)."""

    def __init__(self, cpus: str | None) -> None:
        self.cpus = cpus
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Receiver:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "receiver.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        if self.cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.proc.pid, {int(c) for c in self.cpus.split(",")})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        self.endpoint = f"http://127.0.0.1:{line[1]}"
        return self

    def __exit__(self, *exc: Any) -> None:
        out, _ = self.proc.communicate(input="", timeout=60)
        self.result = json.loads(out.strip().splitlines()[-1])


def _rate(lines: int, seconds: float) -> float:
    return round(lines / seconds) if seconds > 0 else 0.0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    inflight_pods = int(float(args.inflight_pods))
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    work = args.cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work, cpus, args.pin, args.repeat)
    results: dict[str, Any] = {
        "version": 1, "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                     time.gmtime()),
        "command": "python3 benchmarks/run.py " + " ".join(sys.argv[1:]),
        "targets": {"ratio_to_floor": TARGET_RATIO, "bytes_per_inflight_pod": TARGET_POD_BYTES},
        "sizes": {}, "metadata": {},
    }
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        def step(text: str) -> Any:
            return bar.add_task(text, total=1)

        logs: dict[tuple[str, int], Path] = {}
        for n in sizes:
            for kind in ("rr", "metadata"):
                task = step(f"log {kind} {n:,} events")

                def gen_progress(done: int, task: Any = task, kind: str = kind, n: int = n
                                 ) -> None:
                    bar.update(task, description=f"log {kind} {n:,} events: {done:,}")

                logs[(kind, n)] = ensure_log(args.cache, log_params(kind, n), gen_progress)
                bar.update(task, completed=1, description=f"log {kind} {n:,} events")
        task = step(f"log pods {sizes[0]:,} events")
        pods_log = ensure_log(args.cache, log_params("pods", sizes[0]))
        bar.update(task, completed=1)
        task = step(f"log in-flight {inflight_pods:,} pods")
        inflight_log = ensure_log(args.cache, log_params("inflight", inflight_pods))
        bar.update(task, completed=1)

        for n in sizes:
            path = logs[("rr", n)]
            row: dict[str, Any] = {"log": path.name, "bytes": path.stat().st_size}
            # repeat the short phases and keep the fastest: a shared machine is noisy
            rep = args.repeat if n <= 100_000 else 1
            for name, run in (("floor", lambda p=path: runner.child("floor", p,
                                                                    repeat=args.repeat)),
                              ("decode", lambda p=path: runner.child("decode", p,
                                                                     repeat=args.repeat)),
                              ("pipeline", lambda p=path, r=rep: runner.replay(
                                  p, "none", "pipe", repeat=r)),
                              ("replay", lambda p=path, n=n, r=rep: runner.replay(
                                  p, "full", f"rr{n}", repeat=r))):
                task = step(f"{name} rr {n:,}")
                row[name] = run()
                bar.update(task, completed=1,
                           description=f"{name} rr {n:,}: "
                                       f"{_rate(row[name]['lines'], row[name]['seconds']):,.0f}"
                                       " events/s")
            _derive(row)
            results["sizes"][str(n)] = row
            path = logs[("metadata", n)]
            mrow: dict[str, Any] = {"log": path.name, "bytes": path.stat().st_size}
            for name, run in (("floor", lambda p=path: runner.child("floor", p,
                                                                    repeat=args.repeat)),
                              ("replay", lambda p=path, n=n, r=rep: runner.replay(
                                  p, "full", f"md{n}", repeat=r))):
                task = step(f"{name} metadata {n:,}")
                mrow[name] = run()
                bar.update(task, completed=1)
            _derive(mrow)
            results["metadata"][str(n)] = mrow

        prow: dict[str, Any] = {"log": pods_log.name, "bytes": pods_log.stat().st_size}
        for name, run in (("floor", lambda: runner.child("floor", pods_log,
                                                          repeat=args.repeat)),
                          ("replay", lambda: runner.replay(pods_log, "full", "pods",
                                                           repeat=args.repeat))):
            task = step(f"{name} pods {sizes[0]:,}")
            prow[name] = run()
            bar.update(task, completed=1)
        _derive(prow)
        results["pods_only"] = {str(sizes[0]): prow}

        task = step(f"in-flight memory ({inflight_pods:,} pods)")
        results["inflight"] = runner.child("inflight", inflight_log, "--sinks", "none")
        bar.update(task, completed=1)

        if args.profile:
            task = step(f"profile rr {sizes[0]:,}")
            prof = runner.replay(logs[("rr", sizes[0])], "full", "profile", profile=args.top)
            results["profile"] = {"events": sizes[0], "seconds_under_profiler": prof["seconds"],
                                  "top": prof["profile"]}
            bar.update(task, completed=1)

        largest = sizes[-1]
        scaling = []
        for n_workers in sorted({1, *(int(w) for w in str(args.workers).split(","))}):
            task = step(f"workers={n_workers} rr {largest:,}")
            scaling.append(runner.workers(logs[("rr", largest)], n_workers))
            bar.update(task, completed=1)
        base, base_cpu = scaling[0]["seconds"], scaling[0]["cpu_seconds"]
        for s in scaling:
            s["events_per_s"] = _rate(s["lines"], s["seconds"])
            s["speedup"] = round(base / s["seconds"], 2)
            # on N free cores the run takes as long as its busiest process: the busiest
            # worker, or the parent (pre-scan, records)
            busiest = max([*s["workers_cpu_seconds"], s["cpu_seconds"] or 0.0])
            s["projected_speedup"] = round(base_cpu / busiest, 2) if busiest else None
        results["workers"] = {"events": largest, "runs": scaling}

    results["growth"] = _growth(results["sizes"], sizes)
    results["verdict"] = _verdict(results)
    return results


def _derive(row: dict[str, Any]) -> None:
    """Rates per CPU second of the process (one core: lunettes is one thread, plus the
    gRPC exporter's); wall-clock figures are kept beside them (``*_wall``)."""
    floor, replay = row["floor"], row["replay"]
    row["events"] = floor["lines"]
    row["floor_events_per_s"] = _rate(floor["lines"], floor["cpu_seconds"])
    row["replay_events_per_s"] = _rate(replay["lines"], replay["cpu_seconds"])
    row["replay_events_per_s_wall"] = _rate(replay["lines"], replay["seconds"])
    row["ratio_to_floor"] = round(floor["cpu_seconds"] / replay["cpu_seconds"], 3)
    row["ratio_to_floor_wall"] = round(floor["seconds"] / replay["seconds"], 3)
    row["time_vs_floor"] = round(replay["cpu_seconds"] / floor["cpu_seconds"], 2)
    row["peak_rss"] = replay["peak_rss"]
    row["pods"] = replay["pods"]
    row["us_per_pod_beyond_floor"] = round(
        (replay["cpu_seconds"] - floor["cpu_seconds"]) / max(replay["pods"], 1) * 1e6, 1)


def _growth(rows: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    """How CPU time and peak memory grow between consecutive sizes."""
    out = []
    for small, large in pairwise(sizes):
        a, b = rows[str(small)], rows[str(large)]
        events = b["events"] / a["events"]
        replay = b["replay"]["cpu_seconds"] / a["replay"]["cpu_seconds"]
        floor = b["floor"]["cpu_seconds"] / a["floor"]["cpu_seconds"]
        out.append({
            "from": small, "to": large, "events_ratio": round(events, 2),
            "time_ratio": round(replay, 2),
            "time_per_event_ratio": round(replay / events, 2),
            "pipeline_time_per_event_ratio": round(
                b["pipeline"]["cpu_seconds"] / a["pipeline"]["cpu_seconds"] / events, 2),
            "floor_time_ratio": round(floor, 2),
            # per event, replay against the floor: 1.0 is linear even when the machine (page
            # cache, neighbours) makes the larger file slower to even parse
            "time_per_event_vs_floor": round(replay / floor, 2),
            "peak_rss_ratio": round(b["peak_rss"] / a["peak_rss"], 2),
            "peak_rss_growth_bytes": b["peak_rss"] - a["peak_rss"],
        })
    return out


def _verdict(results: dict[str, Any]) -> dict[str, Any]:
    ratios = {n: r["ratio_to_floor"] for n, r in results["sizes"].items()}
    per_pod = results["inflight"]["bytes_per_pod"] or 0
    growth = results["growth"]
    runs = {s["workers"]: s for s in results["workers"]["runs"]}
    speedups = {n: (runs[n]["speedup"] if n <= (results["machine"]["cores"] or 1)
                    else runs[n].get("projected_speedup") or 0) >= target
                for n, target in TARGET_SPEEDUP.items() if n in runs}
    return {
        "ratio_to_floor_met": all(r >= TARGET_RATIO for r in ratios.values()),
        "ratio_to_floor_all_pod_log_met": all(
            r["ratio_to_floor"] >= TARGET_RATIO_PODS
            for r in results.get("pods_only", {}).values()),
        **{f"workers_{n}_speedup_met": ok for n, ok in speedups.items()},
        "bytes_per_inflight_pod_met": per_pod < TARGET_POD_BYTES,
        "linear_time": all(min(g["time_per_event_ratio"], g["time_per_event_vs_floor"]) <= 1.25
                           for g in growth),
        "flat_memory_for_finished_pods": all(g["peak_rss_ratio"] <= 1.5 for g in growth),
    }


# -- reporting ----------------------------------------------------------------------------
def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables (docs/benchmarks.md embeds them)."""
    m = results["machine"]
    lines = [
        f"Measured {results['started']} with `{results['command'].strip()}` on "
        f"{m['cpu']}, {m['cores']} cores, {m['ram_bytes'] / 2**30:.0f} GiB RAM, "
        f"{m['implementation']} {m['python']}, orjson {m['orjson']}.",
        "",
        "| log | events | pods | floor (events/s) | replay end to end (events/s) | "
        "ratio to floor | ratio (wall clock) | replay time / floor | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, group in (("RequestResponse mix", results["sizes"]),
                         ("Metadata only", results["metadata"]),
                         ("every line about a Pod", results.get("pods_only", {}))):
        for n, r in group.items():
            lines.append(
                f"| {label} | {int(n):,} | {r['pods']:,} | {r['floor_events_per_s']:,.0f} | "
                f"{r['replay_events_per_s']:,.0f} | {r['ratio_to_floor']:.2f} | "
                f"{r['ratio_to_floor_wall']:.2f} | {r['time_vs_floor']:.2f}x | "
                f"{_mb(r['peak_rss'])} |")
    lines += ["", "Where the time goes beyond the floor (RequestResponse mix):", "",
              "| events | decode (events/s) | pipeline, no sinks (events/s) | "
              "with SQLite + OTLP (events/s) | µs per Pod beyond the floor |",
              "|---:|---:|---:|---:|---:|"]
    for n, r in results["sizes"].items():
        lines.append(f"| {int(n):,} | "
                     f"{_rate(r['decode']['lines'], r['decode']['cpu_seconds']):,.0f}"
                     f" | {_rate(r['pipeline']['lines'], r['pipeline']['cpu_seconds']):,.0f} | "
                     f"{r['replay_events_per_s']:,.0f} | {r['us_per_pod_beyond_floor']} |")
    inf = results["inflight"]
    lines += ["", f"In-flight memory: {inf['pods_in_flight']:,} Pods in flight, none finished: "
              f"the Folder holds **{inf['bytes_per_pod']:,} bytes per in-flight Pod** "
              f"({inf['bytes_per_hyperevent']:,} per HyperEvent, "
              f"{inf['hyperevents'] / max(inf['pods_in_flight'], 1):.1f} HyperEvents per Pod; "
              f"tracemalloc, what dropping the Folder frees).", ""]
    largest = list(results["sizes"])[-1]
    samples = results["sizes"][largest]["replay"].get("rss_samples") or []
    if samples:
        step = max(1, len(samples) // 8)
        shown = ", ".join(f"{n // 1000:,}k: {_mb(rss)}" for n, rss in samples[::step])
        lines += [f"RSS while replaying the {int(largest):,}-event log (records read: RSS): "
                  f"{shown}. Memory grows while the log is younger than the longest horizon "
                  "(the 35-minute pod timeout and forget window), then stays flat.", ""]
    if results["growth"]:
        lines += ["| growth | events | replay time | time per event | floor time | "
                  "replay/floor per event | peak RSS |", "|---|---:|---:|---:|---:|---:|---:|"]
        for g in results["growth"]:
            lines.append(f"| {g['from']:,} → {g['to']:,} | x{g['events_ratio']} | "
                         f"x{g['time_ratio']} | x{g['time_per_event_ratio']} | "
                         f"x{g['floor_time_ratio']} | x{g['time_per_event_vs_floor']} | "
                         f"x{g['peak_rss_ratio']} |")
        lines.append("")
    w = results["workers"]
    lines += [f"Workers (partitioned replay of the {w['events']:,}-event RequestResponse log, "
              "SQLite + OTLP, all cores; CPU seconds of each process; projected: the single "
              "process' CPU over the busiest process', the speedup on as many free cores):",
              "", "| workers | seconds | events/s | speedup (wall) | CPU s: parent (pre-scan) "
              "| CPU s: each worker | projected speedup | pods |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in w["runs"]:
        cpu = s.get("cpu_seconds")
        each = ", ".join(f"{c:.2f}" for c in s.get("workers_cpu_seconds") or [])
        parent = "" if cpu is None else f"{cpu:.2f}"
        if each:
            parent += f" ({s.get('prescan_cpu_seconds', 0):.2f})"
        projected = s.get("projected_speedup")
        lines.append(f"| {s['workers']} | {s['seconds']:.2f} | {s['events_per_s']:,.0f} | "
                     f"x{s['speedup']} | {parent} | {each} | "
                     f"{'' if projected is None else f'x{projected}'} | {s['pods']:,} |")
    if "profile" in results:
        p = results["profile"]
        lines += ["", f"Profile (cProfile, {p['events']:,} events, top functions by own time):",
                  "", "| function | calls | own s | share |", "|---|---:|---:|---:|"]
        for r in p["top"]:
            lines.append(f"| `{r['function']}` | {r['calls']:,} | {r['tottime']:.3f} | "
                         f"{r['share'] * 100:.1f}% |")
    v = results["verdict"]
    lines += ["", "Targets: " + ", ".join(f"{k.replace('_', ' ')}: {'met' if ok else 'MISSED'}"
                                          for k, ok in v.items()) + "."]
    return "\n".join(lines)


def write_docs(path: Path, text: str) -> None:
    """Replace the results block of docs/benchmarks.md (between the markers)."""
    doc = path.read_text() if path.exists() else f"{RESULTS_BEGIN}\n{RESULTS_END}\n"
    head, sep, rest = doc.partition(RESULTS_BEGIN)
    _, sep2, tail = rest.partition(RESULTS_END)
    if not sep or not sep2:
        head, tail = doc.rstrip() + "\n\n", "\n"
    path.write_text(f"{head}{RESULTS_BEGIN}\n{text}\n{RESULTS_END}{tail}")


def summary(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    Console(stderr=True).print(Markdown(markdown(results)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e5,1e6",
                        help="events per log, comma-separated (default 1e5,1e6)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --sizes 1e4 --inflight-pods 2000 (a few seconds)")
    parser.add_argument("--inflight-pods", default="20000",
                        help="Pods in flight for the memory measurement (default 20000)")
    parser.add_argument("--workers", default=str(os.cpu_count() or 1),
                        help="processes for the partitioned replay, comma-separated "
                             "(default: all cores), each against one process")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="where generated logs are kept (default benchmarks/.cache)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="results JSON (default benchmarks/results.json)")
    parser.add_argument("--docs", type=Path, default=None,
                        help="also rewrite the results block of this Markdown file")
    parser.add_argument("--render", type=Path, default=None, metavar="RESULTS_JSON",
                        help="only print (and with --docs write) the tables of a results file")
    parser.add_argument("--pin", action="store_true",
                        help="pin lunettes to the first core and the receiver to the others "
                             "(steadier on an idle machine, worse on a busy one)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each short phase, the fastest kept (default 3)")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the cProfile run")
    parser.add_argument("--top", type=int, default=15, help="profile rows (default 15)")
    # child mode (internal)
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--sinks", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--otlp", default="", help=argparse.SUPPRESS)
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--cpus", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cprofile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        return child_main(args)
    if args.quick:
        args.sizes, args.inflight_pods, args.repeat = "1e4", "2000", 1
    if args.render:  # tables from an earlier run, nothing measured
        results = json.loads(args.render.read_text())
    else:
        results = measure(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    summary(results)
    if args.docs:
        write_docs(args.docs, markdown(results))
    if not args.render:
        print(f"results written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
