"""``lunettes replay``: read audit logs, write one pod record per Pod."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from lunettes.apiserver.processor import requested, without_requests
from lunettes.cli import exitcodes
from lunettes.cli.common import (
    add_apiserver_load_arg,
    add_bad_limit_args,
    add_config_arg,
    add_dead_letter_arg,
    bad_limits,
    report_config_error,
)
from lunettes.cli.table import pod_table
from lunettes.cli.workers import Job, Report, TimeOrdered, WorkerFailed, run_workers, split_sinks
from lunettes.config.errors import ConfigError
from lunettes.config.overrides import Overrides, apply
from lunettes.model.record import PodRecord
from lunettes.model.results import Results
from lunettes.pipeline import Pipeline, Settings, load_config
from lunettes.private_files import open_private
from lunettes.sinks.base import Sink
from lunettes.sinks.jsonl import JSONLSink
from lunettes.sources import deadletter
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import STDIN, FileSource, expand

if TYPE_CHECKING:
    from lunettes.apiserver.stream import RequestStream


def register(sub: Any) -> None:
    parser = sub.add_parser("replay", help="turn audit logs into pod delivery records",
                            description=__doc__, epilog=exitcodes.EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="audit log files (.gz too), directories of rotated logs, or - "
                             "for stdin (default: the sources of pipeline.yaml)")
    add_config_arg(parser)
    parser.add_argument("--format", choices=("table", "jsonl", "none"), default="table",
                        help="what to print on stdout (default: table)")
    parser.add_argument("--store", metavar="PATH",
                        help="SQLite store file (overrides sinks.sqlite.path)")
    parser.add_argument("--wide", action="store_true",
                        help="table: every stage, the node and the creation time (default: "
                             "the slowest stages, fitted to the terminal)")
    parser.add_argument("--no-store", action="store_true", help="do not write the store")
    parser.add_argument("--otlp-endpoint", metavar="URL",
                        help="export traces over OTLP (default: $OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument("--openmetrics", metavar="FILE",
                        help="write the metrics over audit time as OpenMetrics, for "
                             "promtool tsdb create-blocks-from openmetrics (needs the "
                             "prometheus extra)")
    parser.add_argument("--openmetrics-interval", metavar="SECONDS", type=int, default=60,
                        help="audit time between OpenMetrics samples (default: 60)")
    parser.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"),
                        help="OTLP protocol (default: grpc)")
    parser.add_argument("--workers", metavar="N", type=_workers, default=1,
                        help="processes (default: 1; 0 or auto: one per usable CPU, one "
                             "for stdin). Each reads the whole input and replays its share of "
                             "the Pods")
    add_bad_limit_args(parser)
    add_dead_letter_arg(parser)
    add_apiserver_load_arg(parser)
    parser.add_argument("--apiserver-report", metavar="FILE",
                        help="with --apiserver-load: write lunettes analyze apiserver's JSON "
                             "report of the requests read here (needs the analyze extra)")
    parser.set_defaults(run=run)


def _workers(text: str) -> int:
    """--workers: a number of processes, 0 or ``auto`` for one per CPU (returned as 0)."""
    if text == "auto":
        return 0
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of processes, or auto") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"{count}: must not be negative")
    return count


def _cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's CPU set)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pipeline_data(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """pipeline.yaml with the command line's overrides applied
    (:mod:`lunettes.config.overrides`)."""
    return apply(load_config(args.config), Overrides.from_args(args), env)


def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    try:
        data = pipeline_data(args, env)
    except ConfigError as exc:
        return report_config_error(exc)
    data.pop("checkpoint", None)  # files are read whole: a checkpoint is for live inputs
    configured = file_paths(data, args.config)
    if configured is None:
        return report_config_error(ConfigError([
            f"{args.config / 'pipeline.yaml'}: sources: replay reads files only (file "
            f"sources); give PATHs or use lunettes serve for the others"]))
    if not configured:
        return report_config_error(ConfigError([
            f"{args.config / 'pipeline.yaml'}: sources: no input; give PATHs on the command "
            f"line or a file source"]))
    stdin = STDIN in configured
    workers = args.workers or (1 if stdin else _cpus())
    load = requested(data)
    if args.apiserver_report and not load:
        print("lunettes replay: --apiserver-report needs --apiserver-load", file=sys.stderr)
        return 2
    if load and workers > 1 and args.openmetrics:
        print("lunettes replay: --openmetrics with --apiserver-load: the request metrics are "
              "written by one process; use --workers 1", file=sys.stderr)
        return 2
    if args.apiserver_report:
        from lunettes.cli.analyze import EXTRA_HINT, missing_extra

        if missing_extra():
            print(f"lunettes replay: --apiserver-report needs {', '.join(missing_extra())}:"
                  f" {EXTRA_HINT}", file=sys.stderr)
            return 2
    if workers > 1 and stdin:
        print(f"lunettes replay: --workers {args.workers}: every worker reads the whole "
              "input, and stdin (-) can be read once; use --workers 1", file=sys.stderr)
        return 2
    extra: list[Sink] = [JSONLSink("-")] if args.format == "jsonl" else []
    if args.openmetrics:
        try:
            from lunettes.sinks.openmetrics import OpenMetricsFileSink
        except ImportError as exc:
            return report_config_error(ConfigError([
                f"--openmetrics: needs an optional dependency ({exc.name}); install it with:"
                f" pip install 'lunettes[prometheus]'"]))
        metrics = OpenMetricsFileSink(args.openmetrics, max(1, args.openmetrics_interval))
        extra.append(metrics if workers == 1 else TimeOrdered(metrics))
    if workers > 1:
        return _run_workers(args, data, configured, env, extra, workers)
    try:
        pipeline = Pipeline.from_config(args.config, data, env, extra)
    except ConfigError as exc:
        return report_config_error(exc)
    requests = pipeline.requests
    if requests is not None and args.openmetrics:
        from lunettes.apiserver.metrics import RequestCollector

        requests.counts.before_close = metrics.track(RequestCollector(requests.counts))
    err = Console(stderr=True)
    records: list[PodRecord] = []
    keep = records.append if args.format == "table" else None
    sources = [s for s in pipeline.sources if isinstance(s, FileSource)]
    paths = [p for s in sources for p in s.paths]
    progress = _progress(err, paths)
    try:
        if progress is None:
            stats = pipeline.run(None, keep)
        else:
            with progress:
                task = progress.add_task("reading", total=_total_bytes(paths))
                for source in sources:
                    source.on_bytes = lambda n: progress.advance(task, n)
                stats = pipeline.run(None, keep)
    finally:
        pipeline.shutdown()
    _print_table(records, pipeline.results, args.wide)
    _summary(err, stats, pipeline, [f for s in sources for f in s.skipped_files],
             pipeline.settings)
    if requests is not None and args.apiserver_report and not _write_load_report(
            err, requests, args.apiserver_report):
        return 2
    return _exit(err, stats, pipeline.bad, args)


def _write_load_report(err: Console, requests: RequestStream, path: str) -> bool:
    """Write the load analysis' report of ``requests`` to ``path``; False (told) when the
    requests span too many intervals."""
    from lunettes.apiserver import SpanTooLong
    from lunettes.apiserver.report import to_json

    try:
        report = to_json(requests.analysis())
    except SpanTooLong as exc:
        err.print(f"lunettes replay: --apiserver-report: {exc}", markup=False,
                  highlight=False, soft_wrap=True)
        return False
    with open_private(path, "wb") as out:
        out.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return True


def file_paths(data: dict[str, Any], config_dir: Path) -> list[str] | None:
    """The paths of the ``file`` sources of ``data`` (relative ones in ``config_dir``, as
    the source reads them); None when it has sources of other types."""
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        return []
    if any(str(k).split("/")[0] != "file" for k in sources):
        return None
    paths: list[str] = []
    for section in sources.values():
        given = (section or {}).get("paths") if isinstance(section, dict) else None
        paths.extend([given] if isinstance(given, str) else
                     [p for p in given or [] if isinstance(p, str)])
    return [p if p == STDIN else str(config_dir / p) for p in paths]


def _run_workers(args: argparse.Namespace, data: dict[str, Any], configured: list[str],
                 env: dict[str, str], extra: list[Sink], count: int) -> int:
    """The replay over ``count`` processes (see :mod:`lunettes.cli.workers`); with
    ``--apiserver-load`` the parent counts the requests of the lines its pre-scan reads
    (the workers run no ``requests`` processor)."""
    shared, own = split_sinks(data)
    shared = without_requests(shared)
    try:  # validates the whole config but the workers' sinks before any worker starts
        parent = Pipeline.from_config(args.config, own, env, extra)
    except ConfigError as exc:
        return report_config_error(exc)
    err = Console(stderr=True)
    records: list[PodRecord] = []
    table = args.format == "table"

    def on_records(batch: list[PodRecord]) -> None:
        for sink in parent.sinks:
            sink.export(batch)
        if table:
            records.extend(batch)

    skipped: list[str] = []
    paths = expand(configured, skipped)
    progress = _progress(err, paths)
    job = Job(args.config, shared, env, paths, count,
              send_records=table or bool(parent.sinks), progress=progress is not None)
    requests = parent.requests
    on_line = requests.add_line if requests is not None else None
    try:
        if progress is None:
            report = run_workers(job, on_records, on_line=on_line)
        else:
            with progress:
                task = progress.add_task("reading", total=_total_bytes(paths))
                report = run_workers(job, on_records, lambda n: progress.advance(task, n),
                                     on_line)
        for sink in parent.sinks:
            sink.force_flush()
    except ConfigError as exc:
        return report_config_error(exc)
    except WorkerFailed as exc:
        if exc.detail:
            err.print(exc.detail.rstrip(), markup=False, highlight=False, soft_wrap=True)
        err.print(f"lunettes replay: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 1
    finally:
        parent.shutdown()
    report.stats["sink_lost"] += parent.stats["sink_lost"]
    _print_table(records, parent.results, args.wide)
    _summary(err, report.stats, report, skipped, parent.settings)
    if requests is not None:
        requests.finish()
        if args.apiserver_report and not _write_load_report(err, requests,
                                                            args.apiserver_report):
            return 2
    return _exit(err, report.stats, report.bad, args)


def _exit(console: Console, stats: Counter[str], bad: BadRecords,
          args: argparse.Namespace) -> int:
    """The exit status of a finished run (see :mod:`lunettes.cli.exitcodes`), told on
    stderr when not 0."""
    code, why = exitcodes.exit_code(
        exitcodes.RunOutcome(stats["records"], dict(bad.counts), stats["sink_lost"]),
        bad_limits(args))
    if code:
        console.print(f"lunettes replay: {why} (exit status {code})", markup=False,
                      highlight=False, soft_wrap=True)
    return code


def _print_table(records: list[PodRecord], results: Results, wide: bool) -> None:
    if records:
        out = Console()
        if not out.is_terminal:
            out = Console(width=240)
        out.print(pod_table(records, out.width, results, wide))


def _progress(console: Console, paths: list[str]) -> Progress | None:
    if not console.is_terminal or paths == [STDIN]:
        return None
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _total_bytes(paths: list[str]) -> int | None:
    """What the progress bar counts to: the files' sizes (compressed ones for .gz)."""
    if STDIN in paths:
        return None
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


def _summary(console: Console, stats: Counter[str], source: Pipeline | Report,
             skipped_files: list[str], settings: Settings) -> None:
    outcomes = ", ".join(f"{k.split(':', 1)[1]} {v}" for k, v in sorted(stats.items())
                         if k.startswith("outcome:"))
    pods = stats["hyperevents"]  # one per record folded into a Pod's timeline
    others = stats["records"] - pods - stats["duplicate"] - stats["interim_stage"]
    console.print(
        f"read {stats['records']} records: {pods} in Pod timelines "
        f"({source.bad.total} bad, {stats['duplicate']} duplicate, "
        f"{stats['interim_stage']} interim stages), {others} others "
        f"({stats['skipped']} not decoded); "
        f"{stats['pods_final']} pods ({stats['pods_partial']} partial): {outcomes or 'none'}"
        + (f"; {stats['pods_carried']} of them in flight at the end of the last run into "
           f"the store, followed on" if stats["pods_carried"] else ""),
        highlight=False, soft_wrap=True)
    if skipped_files:
        console.print(f"{len(skipped_files)} file(s) of the directories not read:\n"
                      + "\n".join(f"  {line}" for line in skipped_files),
                      highlight=False, markup=False, soft_wrap=True)
    if source.bad.total:
        console.print(source.bad.report(), highlight=False, markup=False)
    if source.late.count:
        console.print(source.late.report(), highlight=False, markup=False, soft_wrap=True)
    if settings.dead_letter:
        console.print(deadletter.report(settings.dead_letter, stats["dead_letter_written"],
                                        stats["dead_letter_dropped"],
                                        settings.dead_letter_max_mb),
                      highlight=False, markup=False, soft_wrap=True)
    sys.stderr.flush()
