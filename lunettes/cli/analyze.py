"""``lunettes analyze apiserver``: API server load from audit logs: anomalous windows, the
clients that caused them, slow and rejected requests. ``lunettes analyze delivery``: windows
where Pod delivery got slower, and the node, pool, registry, namespace, owner kind and stage
that explain them."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from lunettes.apiserver import DIMENSIONS, SpanTooLong
from lunettes.cli.common import add_config_arg, report_config_error
from lunettes.config.errors import ConfigError
from lunettes.config.overrides import Overrides, apply
from lunettes.sources.errors import BadRecords

EXTRA_MODULES = ("numpy", "statsmodels", "matplotlib")
EXTRA_HINT = "pip install 'lunettes[analyze]'"


def register(sub: Any) -> None:
    parser = sub.add_parser("analyze", help="API server load: spikes and who caused them",
                            description=__doc__)
    kinds = parser.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    load = kinds.add_parser("apiserver", help="requests per interval by client, anomalous "
                            "windows and their culprits, slow and rejected requests",
                            description=__doc__)
    load.add_argument("paths", nargs="+", metavar="PATH",
                      help="audit log files (.gz too), directories of rotated logs, or -")
    load.add_argument("--interval", type=int, default=60, metavar="SECONDS",
                      help="length of one interval of the series (default: 60)")
    load.add_argument("--period", type=int, metavar="INTERVALS",
                      help="seasonal period in intervals (default: detected; 0: none)")
    load.add_argument("--threshold", type=float, default=4.0,
                      help="robust z above which an interval is anomalous (default: 4)")
    load.add_argument("--top-k", type=int, default=25,
                      help="values kept per dimension and interval; the rest count as "
                           "(other) (default: 25)")
    load.add_argument("--where", action="append", default=[], metavar="DIMENSION=VALUE",
                      help=f"analyse one slice (repeatable); dimensions: "
                           f"{', '.join(DIMENSIONS)}")
    load.add_argument("--format", choices=("table", "json"), default="table")
    load.add_argument("--chart", metavar="PNG", help="write a chart of the series here")
    load.add_argument("--top", type=int, default=10, help="rows per table (default: 10)")
    load.add_argument("--min-count", type=int, default=5,
                      help="requests a (URI pattern, client) needs to be listed as slow")
    load.set_defaults(run=run_apiserver)
    delivery = kinds.add_parser("delivery", help="windows where Pod delivery got slower and "
                                "what explains them", description=__doc__)
    delivery.add_argument("paths", nargs="*", metavar="PATH",
                          help="audit logs to replay (no store is written)")
    delivery.add_argument("--store", metavar="DB", help="read the pod records of this "
                          "SQLite store (lunettes replay's) instead")
    add_config_arg(delivery)
    delivery.add_argument("--interval", type=int, default=300, metavar="SECONDS",
                          help="Pods are grouped by creation time in intervals this long "
                               "(default: 300)")
    delivery.add_argument("--period", type=int, default=0, metavar="INTERVALS",
                          help="seasonal period in intervals (default: 0, none)")
    delivery.add_argument("--threshold", type=float, default=4.0)
    delivery.add_argument("--format", choices=("table", "json"), default="table")
    delivery.set_defaults(run=run_delivery)


def missing_extra() -> list[str]:
    """The modules of the ``analyze`` extra that are not installed."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def _where(items: list[str]) -> dict[str, str]:
    where = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in DIMENSIONS:
            raise ValueError(f"--where {item!r}: expected DIMENSION=VALUE with a dimension "
                             f"among {', '.join(DIMENSIONS)}")
        where[name] = value
    return where


class UsageError(Exception):
    """A command line the analysis cannot run (exit status 2)."""


def _report(args: argparse.Namespace, build: Callable[[], dict[str, Any]],
            show: Callable[[dict[str, Any], Console], None],
            empty: Callable[[dict[str, Any]], bool] = lambda report: False) -> int:
    """The path both analyses share: the extra checked, the report built (a
    :class:`UsageError` or a configuration error is told and exits 2), printed as JSON or
    by ``show``; exit status 1 when the report is ``empty``."""
    missing = missing_extra()
    if missing:
        print(f"lunettes analyze needs {', '.join(missing)}: {EXTRA_HINT}", file=sys.stderr)
        return 2
    try:
        report = build()
    except UsageError as exc:
        print(f"lunettes analyze {args.analysis}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        return report_config_error(exc)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        show(report, Console())
    return 1 if empty(report) else 0


def run_apiserver(args: argparse.Namespace) -> int:
    bad = BadRecords()

    def build() -> dict[str, Any]:
        try:
            where = _where(args.where)
        except ValueError as exc:
            raise UsageError(exc) from None
        from lunettes.apiserver.report import analyze_paths, to_json

        try:
            analysis = analyze_paths(args.paths, bad, interval_s=args.interval,
                                     period=args.period, threshold=args.threshold,
                                     top_k=args.top_k, where=where)
        except SpanTooLong as exc:
            raise UsageError(f"{exc} (--interval)") from None
        if args.chart:
            from lunettes.apiserver.chart import write_chart

            write_chart(analysis, args.chart)
        return to_json(analysis, top=args.top, min_count=args.min_count)

    code = _report(args, build, print_report, lambda report: report["requests"] == 0)
    if bad.total:
        print(bad.report(), file=sys.stderr)
    return code


def _pod_records(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The pod records of the store, or of a replay of the audit logs without sinks."""
    if args.store:
        try:
            with sqlite3.connect(f"file:{args.store}?mode=ro", uri=True) as db:
                return [orjson.loads(row[0]) for row in db.execute("SELECT record FROM pods")]
        except sqlite3.Error as exc:
            raise UsageError(f"--store {args.store}: {exc}") from None
    from lunettes.pipeline import Pipeline, load_config

    data = apply(load_config(args.config), Overrides.from_args(args))
    data["sinks"] = {}
    data.pop("checkpoint", None)
    records: list[dict[str, Any]] = []
    Pipeline.from_config(args.config, data, dict(os.environ)).run(
        None, lambda record: records.append(record.to_dict()))
    return records


def run_delivery(args: argparse.Namespace) -> int:
    def build() -> dict[str, Any]:
        if bool(args.paths) == bool(args.store):
            raise UsageError("give audit log PATHs or --store DB (one of them)")
        records = _pod_records(args)
        from lunettes.apiserver.delivery import analyze_delivery, delivery_json

        return delivery_json(analyze_delivery(records, args.interval, args.period,
                                              args.threshold))

    return _report(args, build, print_delivery)


def print_delivery(report: dict[str, Any], console: Console) -> None:
    """The delivery report: each window of slower delivery and what explains it."""
    console.print(f"{report['pods']} delivered Pods from {report['start']} to "
                  f"{report['end']} ({report['interval_s']} s intervals)")
    for item in report["regressions"]:
        console.print(
            f"\n[bold]slower delivery {item['start']} - {item['end']}[/bold]: mean "
            f"{item['mean_s']} s (expected {item['expected_mean_s']} s), p99 "
            f"{item['p99_s']} s (elsewhere {item['reference_p99_s']} s), score "
            f"{item['score']}")
        console.print(_table("what explains the extra seconds", [
            "attributes", "expected s", "real s", "extra s", "share", "support s"], [
            [", ".join(f"{k}={v}" for k, v in c["attributes"].items()), c["expected_s"],
             c["real_s"], c["difference"], f"{c['share']:.0%}", c["support"]]
            for c in item["culprits"]]))
    if not report["regressions"]:
        console.print("no window of slower delivery")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for i, name in enumerate(columns):
        table.add_column(name, justify="left" if i < len(columns) - 3 or i == 0 else "right",
                         overflow="fold")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def print_report(report: dict[str, Any], console: Console) -> None:
    """The report as rich tables, each folding its cells to fit the terminal."""
    console.print(
        f"{report['requests']} requests from {report['start']} to {report['end']} "
        f"({report['interval_s']} s intervals, period "
        f"{report['period'] or 'none'}); {report['bad_records']} bad records; "
        f"(other): {report['guard']['folded'].get('user_agent', 0)} requests of clients "
        f"outside the top of their interval")
    for anomaly in report["anomalies"]:
        console.print(
            f"\n[bold]anomalous window {anomaly['start']} - {anomaly['end']}[/bold]: "
            f"{anomaly['requests']} requests, {anomaly['expected']} expected, "
            f"score {anomaly['score']}")
        console.print(_table("who explains it", [
            "attributes", "expected/s", "real/s", "difference", "share", "support"], [
            [", ".join(f"{k}={v}" for k, v in c["attributes"].items()), c["expected_rate"],
             c["real_rate"], c["difference"], f"{c['share']:.0%}", c["support"]]
            for c in anomaly["culprits"]]))
    if not report["anomalies"]:
        console.print("no anomalous window")
    for name, title in (("user_agent", "top clients"), ("user", "top users")):
        console.print(_table(title, [name.replace("_", " "), "requests"],
                             [[t["value"], t["requests"]] for t in report["top"][name]]))
    console.print(_table("slowest requests (p99)", ["URI pattern", "user agent", "count",
                                                    "mean s", "p99 s"],
                         [[s["uri"], s["user_agent"], s["count"], s["mean_s"], s["p99_s"]]
                          for s in report["slow"]]))
    console.print(_table("rejected (429)", ["user agent", "user", "verb", "resource",
                                            "count"],
                         [[r["user_agent"], r["user"], r["verb"], r["resource"], r["count"]]
                          for r in report["rejected"]]))
    console.print(_table("kube-controller-manager by controller", [
        "controller", "requests", "per minute"],
        [[c["controller"], c["requests"], c["per_minute"]] for c in report["controllers"]]))
    console.print(_table("cluster-wide LISTs without limit or resourceVersion", [
        "user agent", "resource", "count"],
        [[u["user_agent"], u["resource"], u["count"]] for u in report["unbounded_lists"]]))
