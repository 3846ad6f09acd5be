"""``lunettes replay --workers N``: one replay over N processes, merged by the parent.

Each worker builds its own :class:`~lunettes.pipeline.Pipeline` from the same configuration
and reads every path with ``Partition(k, N)`` (see :mod:`lunettes.sources.partition`): it
decodes only the records of its own Pods and sees the others' as clock ticks, so it writes
the pod records one process writes for those Pods. Workers run the sinks several processes
can share themselves (:data:`WORKER_SINKS`: the SQLite store, which serialises its writers,
and OTLP, each worker with a spool directory of its own). The parent runs every other sink
(JSON lines, the OpenMetrics file, Elasticsearch, whose spool directory takes one writer,
plug-ins) on the pod records the workers send back, merges their counters and bad-record
reports, and stops every worker as soon as one fails.

Workers start from a forkserver with the pipeline's modules preloaded (spawn where there is
no forkserver): no worker is forked from a process that may run gRPC threads, and two
workers are ready in 0.40 s (0.46 s with spawn) on a 2-core machine.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from lunettes.config.errors import ConfigError
from lunettes.model.record import PodRecord
from lunettes.pipeline import Pipeline
from lunettes.processors.base import decodes_late
from lunettes.sinks.base import Sink
from lunettes.sinks.spool import default_dir
from lunettes.sources.errors import BadRecords, LateRecords
from lunettes.sources.files import MAX_LINE_BYTES, FileSource
from lunettes.sources.partition import Partition
from lunettes.sources.prescan import Prescan

__all__ = ["WORKER_SINKS", "Job", "Report", "TimeOrdered", "WorkerFailed", "own_spools",
           "run_workers",
           "split_sinks"]

WORKER_SINKS = frozenset({"sqlite", "otlp"})
"""Sink types every worker writes itself; the parent runs all others."""
RECORD_BATCH = 200
"""Pod records per message to the parent."""
BYTES_STEP = 1 << 20
"""Worker 0 reports its progress every this many bytes read."""


def split_sinks(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(workers', parent's) pipeline.yaml data: the same but for the sinks each runs, and
    without sources (each worker reads the job's paths with its partition)."""
    data = {**data, "sources": {}}
    sinks = data.get("sinks") or {}
    if not isinstance(sinks, Mapping):  # invalid: the parent's validation reports it
        return dict(data), dict(data)
    shared = {k: v for k, v in sinks.items() if str(k).split("/")[0] in WORKER_SINKS}
    rest = {k: v for k, v in sinks.items() if k not in shared}
    return {**data, "sinks": shared}, {**data, "sinks": rest}


@dataclass(frozen=True)
class Job:
    """What every worker is given (pickled): the config, the expanded input paths, the
    number of workers, and whether to send pod records and progress back."""

    config: Path
    data: dict[str, Any]
    env: dict[str, str]
    paths: list[str]
    count: int
    send_records: bool = False
    progress: bool = False
    max_line_bytes: int = MAX_LINE_BYTES


@dataclass
class Report:
    """What a run read: counters, bad records and lines (every worker reads every line)."""

    stats: Counter[str] = field(default_factory=Counter)
    bad: BadRecords = field(default_factory=BadRecords)
    lines: int = 0
    late: LateRecords = field(default_factory=LateRecords)
    cpu_s: list[float] = field(default_factory=list)
    """Each worker's CPU seconds, in worker order."""
    prescan_cpu_s: float = 0.0
    """The parent's pre-scan thread's CPU seconds."""


class WorkerFailed(Exception):
    """A worker raised or died; the message names it and says why, ``detail`` holds its
    traceback when it had one."""

    def __init__(self, index: int, count: int, why: str, detail: str = "") -> None:
        super().__init__(f"worker {index + 1} of {count} failed: {why}")
        self.detail = detail


class TimeOrdered:
    """Holds every pod record until shutdown, then passes them on to ``sink`` in the order
    of the audit time they became final: the OpenMetrics file snapshots its counters over
    that time, and workers deliver their records interleaved."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._records: list[PodRecord] = []

    def export(self, batch: Sequence[PodRecord]) -> None:
        self._records.extend(batch)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        return self.sink.force_flush(timeout_s)

    def shutdown(self) -> None:
        from lunettes.sinks.openmetrics import record_time_us

        records, self._records = self._records, []
        if records:
            records.sort(key=lambda r: (record_time_us(r) or 0, r.uid))
            self.sink.export(records)
        self.sink.shutdown()


def run_workers(job: Job, on_records: Callable[[list[PodRecord]], None] | None = None,
                on_bytes: Callable[[int], None] | None = None,
                on_line: Callable[[bytes, str], None] | None = None) -> Report:
    """Run ``job.count`` workers to the end and return their merged report.

    ``on_records`` receives the pod records workers send (``job.send_records``),
    ``on_bytes`` the bytes worker 0 has read (``job.progress``), ``on_line`` (on the
    pre-scan's thread, done when this returns) every line routed, with its place. Raises
    :class:`~lunettes.config.errors.ConfigError` for a configuration only workers build
    (their sinks) and :class:`WorkerFailed` when one raises or dies; every other worker is
    stopped before either is raised, and before any exception of the callbacks.
    """
    context = _context()
    procs: list[BaseProcess] = []
    readers: dict[Connection, int] = {}
    reports: dict[int, Report] = {}
    feeds: list[Connection] = []
    scan = Prescan(job.paths, job.count, job.max_line_bytes, on_bytes, on_line)
    scan_cpu: list[float] = []
    scan_errors: list[BaseException] = []
    feeder = threading.Thread(target=_feed, args=(scan, feeds, scan_cpu, scan_errors),
                              name="lunettes-prescan", daemon=True)
    try:
        for index in range(job.count):
            reader, writer = context.Pipe(duplex=False)
            feed_reader, feed_writer = context.Pipe(duplex=False)
            proc = context.Process(target=_work, args=(job, index, writer, feed_reader),
                                   name=f"lunettes-worker-{index + 1}", daemon=True)
            proc.start()
            writer.close()
            feed_reader.close()
            procs.append(proc)
            readers[reader] = index
            feeds.append(feed_writer)
        feeder.start()
        while readers:
            for ready in wait(list(readers)):
                assert isinstance(ready, Connection)
                index = readers[ready]
                try:
                    kind, payload = ready.recv()
                except (EOFError, OSError):
                    del readers[ready]
                    ready.close()
                    procs[index].join()
                    if index not in reports:
                        raise WorkerFailed(index, job.count,
                                           _death(procs[index].exitcode)) from None
                    continue
                if kind == "records" and on_records is not None:
                    on_records(payload)
                elif kind == "bytes" and on_bytes is not None:
                    on_bytes(payload)
                elif kind == "done":
                    reports[index] = payload
                elif kind == "config":
                    raise ConfigError(payload)
                elif kind == "failed":
                    if scan_errors:  # the worker failed for want of its input
                        raise scan_errors[0]
                    raise WorkerFailed(index, job.count, *payload)
    finally:
        for process in procs:
            if process.is_alive():
                process.terminate()
        for process in procs:
            process.join()
        for left in readers:
            left.close()
        for feed in feeds:  # a feeder still sending stops at its next send
            feed.close()
        if feeder.is_alive():
            feeder.join()
    report = merge([reports[k] for k in sorted(reports)], job.paths)
    report.lines += scan.lines
    report.prescan_cpu_s = sum(scan_cpu)
    return report


def _feed(scan: Prescan, feeds: list[Connection], cpu: list[float],
          errors: list[BaseException]) -> None:
    """The pre-scan thread: each worker's items, batch by batch, then None; its CPU
    seconds go to ``cpu``, an exception to ``errors``."""
    began = time.thread_time()
    try:
        for batch in scan:
            for feed, items in zip(feeds, batch, strict=True):
                feed.send(items)
        for feed in feeds:
            feed.send(None)
    except OSError:
        pass  # a worker is gone (or the run was stopped): the parent reports why
    except BaseException as exc:  # a bug: the workers stop reading, the parent raises it
        errors.append(exc)
        for feed in feeds:
            feed.close()
    finally:
        cpu.append(time.thread_time() - began)


def merge(reports: Iterable[Report], paths: Sequence[str] = ()) -> Report:
    """One report of several workers': counters summed, the first bad-record places of
    each reason in input order (``paths``, then line), as one process reports them."""
    total = Report()
    for report in reports:
        total.bad.samples_per_reason = report.bad.samples_per_reason
        total.stats.update(report.stats)
        total.bad.counts.update(report.bad.counts)
        for reason, places in report.bad.samples.items():
            total.bad.samples.setdefault(reason, []).extend(places)
        total.lines = max(total.lines, report.lines)
        total.late.count += report.late.count
        total.late.places.extend(report.late.places)
        total.cpu_s.extend(report.cpu_s)
    order = {path: n for n, path in enumerate(paths)}
    for places in [*total.bad.samples.values(), total.late.places]:
        places.sort(key=lambda place: _position(place, order))
    for places in total.bad.samples.values():
        del places[total.bad.samples_per_reason:]
    del total.late.places[total.late.samples:]
    return total


def _position(place: str, order: Mapping[str, int]) -> tuple[int, int]:
    """(path index, line or document number) of a ``file:line: detail`` place."""
    for path, n in order.items():
        if place.startswith(path) and place[len(path):len(path) + 1] in (":", "#"):
            digits = place[len(path) + 1:].split(":", 1)[0]
            return n, int(digits) if digits.isdigit() else 0
    return len(order), 0


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exited (status {exitcode}) before its report"


def _context() -> ForkServerContext | SpawnContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # used when the server starts
        return context
    return multiprocessing.get_context("spawn")


# -- in the worker -------------------------------------------------------------------------

def _work(job: Job, index: int, out: Connection, feed: Connection) -> None:
    """One worker: replay its partition (the lines the parent's pre-scan sends on
    ``feed``), then send its report (or why it failed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops the workers
    message: tuple[str, Any]
    try:
        message = ("done", _replay(job, index, out, feed))
    except ConfigError as exc:
        message = ("config", exc.problems)
    except BaseException as exc:  # the parent reports it and stops the others
        message = ("failed", (f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    try:
        out.send(message)
        out.close()
    except OSError:
        pass  # the parent is gone


def own_spools(data: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Worker ``index``'s pipeline.yaml data: each OTLP sink spools to a directory of its
    own, ``<spool_dir>/worker-<index + 1>`` (a spool directory takes one writer); a later
    run with as many workers sends what it left."""
    sinks = data.get("sinks")
    if not isinstance(sinks, Mapping):
        return dict(data)
    own: dict[str, Any] = {}
    for key, section in sinks.items():
        if str(key).split("/")[0] == "otlp" and isinstance(section, Mapping | None):
            section = dict(section or {})
            base = section.get("spool_dir")
            base = base if isinstance(base, str) else default_dir(str(key))
            section["spool_dir"] = f"{base}/worker-{index + 1}"
        own[key] = section
    return {**data, "sinks": own}


def _replay(job: Job, index: int, out: Connection, feed: Connection) -> Report:
    began = time.process_time()
    pipeline = Pipeline.from_config(job.config, own_spools(job.data, index), job.env)
    source = FileSource(job.paths, partition=Partition(index, job.count),
                        max_line_bytes=job.max_line_bytes, feed=iter(feed.recv, None),
                        decode_late=decodes_late(pipeline.processors))
    source.bad.dead_letter = pipeline.bad.dead_letter  # every worker appends to it
    if pipeline.carry is not None:  # Pods in flight go on with the same worker next run
        pipeline.carry.key = f"worker-{index + 1}-of-{job.count}"
    batch: list[PodRecord] = []

    def keep(record: PodRecord) -> None:
        batch.append(record)
        if len(batch) >= RECORD_BATCH:
            out.send(("records", batch.copy()))
            batch.clear()

    progress = _BytesSender(out) if job.progress and index == 0 else None
    source.on_bytes = progress
    try:
        stats = pipeline.run(source, keep if job.send_records else None, source.bad)
    finally:
        pipeline.shutdown()
    if batch:
        out.send(("records", batch))
    if progress is not None:
        progress.flush()
    source.bad.dead_letter = pipeline.late.dead_letter = None  # the report is pickled
    return Report(stats, source.bad, source.lines, pipeline.late,
                  [time.process_time() - began])


class _BytesSender:
    """``on_bytes`` of worker 0: bytes read, sent every :data:`BYTES_STEP`."""

    def __init__(self, out: Connection) -> None:
        self.out = out
        self.pending = 0

    def __call__(self, n: int) -> None:
        self.pending += n
        if self.pending >= BYTES_STEP:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.out.send(("bytes", self.pending))
            self.pending = 0
