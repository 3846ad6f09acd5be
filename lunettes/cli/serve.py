"""``lunettes serve``: read audit input in the background and serve /metrics, /healthz and
/readyz (Prometheus text or OpenMetrics). Needs the ``serve`` extra."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from collections.abc import Iterable
from typing import Any

from lunettes.cli.common import add_config_arg, report_config_error
from lunettes.cli.replay import pipeline_data
from lunettes.config.errors import ConfigError, Section
from lunettes.model.audit import AuditRecord
from lunettes.pipeline import Pipeline
from lunettes.registry import BuildContext
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import STDIN, FileSource
from lunettes.sources.follow import FollowSource


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="read audit logs and serve Prometheus metrics",
                            description=__doc__)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="audit log files (.gz too), directories, or - for stdin")
    add_config_arg(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port to listen on; 0 picks a free one (default: 8080)")
    parser.add_argument("--follow", action="store_true",
                        help="keep reading the files as they grow (plain files only)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="pod records handed to the sinks at once (default: 1, so "
                             "metrics move as soon as a Pod is final)")
    parser.add_argument("--store", metavar="PATH",
                        help="SQLite store file (overrides sinks.sqlite.path)")
    parser.add_argument("--no-store", action="store_true", help="do not write the store")
    parser.add_argument("--otlp-endpoint", metavar="URL", help="also export traces over OTLP")
    parser.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"),
                        help="OTLP protocol (default: grpc)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

        from lunettes.api.app import ServeState, create_app
        from lunettes.api.metrics import PipelineCollector
        from lunettes.sinks.prometheus import PrometheusSink
    except ImportError as exc:
        print(f"serve: needs an optional dependency ({exc.name}); install it with: "
              f"pip install 'lunettes[serve]'", file=sys.stderr)
        return 2
    env = dict(os.environ)
    # The one place a registry is wired to a server: everything else gets it injected.
    registry = CollectorRegistry()
    try:
        data = pipeline_data(args, env)
        sinks = dict(data.get("sinks") or {})
        wanted = [k for k in sinks if str(k).split("/")[0] == "prometheus"]
        key = wanted[0] if wanted else "prometheus"
        section = sinks.get(key) if wanted else None
        data["sinks"] = {k: v for k, v in sinks.items() if k not in wanted}
        problems: list[str] = []
        origin = f"{args.config / 'pipeline.yaml'}: sinks"
        metrics = PrometheusSink.from_config(
            key, Section(section, f"{origin}.{key}", problems),
            BuildContext(args.config, env), registry=registry)
        try:
            pipeline = Pipeline.from_config(args.config, data, env, [metrics])
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return report_config_error(exc)
    pipeline.batch_size = max(1, args.batch_size)
    state = ServeState()
    stop = threading.Event()
    bad = BadRecords()
    source: Iterable[AuditRecord]
    try:
        if args.follow:
            source = FollowSource(args.paths, stop, bad=bad, on_caught_up=state.ready.set)
        else:
            source = FileSource(args.paths, bad)
    except ValueError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        pipeline.shutdown()
        return 2
    registry.register(PipelineCollector(pipeline, bad))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    reader = threading.Thread(target=_read, name="lunettes-reader",
                              args=(pipeline, source, state, args), daemon=True)
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        print(f"serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        pipeline.shutdown()
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"lunettes serve: listening on http://{shown}:{port}/metrics", file=sys.stderr,
          flush=True)
    reader.start()
    server = uvicorn.Server(uvicorn.Config(create_app(registry, state), log_level="warning",
                                           access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        if args.paths != [STDIN]:
            reader.join(timeout=10)
        pipeline.shutdown()
        sock.close()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _read(pipeline: Pipeline, source: Iterable[AuditRecord], state: Any,
          args: argparse.Namespace) -> None:
    """The reader thread: run the pipeline over the input, then keep serving what it made."""
    state.phase = "following" if args.follow else "reading"
    if args.paths == [STDIN]:
        state.ready.set()
    try:
        pipeline.run(source)
    except Exception as exc:  # the server stays up to report it on /healthz
        state.phase, state.error = "failed", f"{type(exc).__name__}: {exc}"
        print(f"serve: reading the input failed: {state.error}", file=sys.stderr, flush=True)
        return
    state.details["pods"] = pipeline.stats.get("pods_final", 0)
    state.phase = "done"
    state.ready.set()
    print(f"lunettes serve: input read ({pipeline.stats.get('records', 0)} records, "
          f"{pipeline.stats.get('pods_final', 0)} pods); still serving", file=sys.stderr,
          flush=True)
