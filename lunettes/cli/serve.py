"""``lunettes serve``: read audit input in the background (optional) and serve the API
(/api/v1, /docs, /openapi.json), the web page (/), /metrics, /healthz and /readyz. The API
reads the embedded SQLite store by default, or Elasticsearch (--api-store elasticsearch).
Needs the ``serve`` extra."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import ssl
import sys
import threading
from typing import Any

from lunettes.cli.common import (
    add_apiserver_load_arg,
    add_config_arg,
    add_dead_letter_arg,
    report_config_error,
)
from lunettes.cli.replay import pipeline_data
from lunettes.config.errors import ConfigError, Section
from lunettes.pipeline import Pipeline
from lunettes.registry import BuildContext
from lunettes.sources.files import STDIN
from lunettes.sources.webhook import WebhookSource


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="serve the API, the web page and Prometheus "
                                          "metrics, reading audit logs in the background",
                            description=__doc__)
    add_config_arg(parser)
    given = parser.add_argument_group("input")
    given.add_argument("paths", nargs="*", metavar="PATH",
                       help="audit log files (.gz too), directories, or - for stdin "
                            "(default: the sources of pipeline.yaml; none: serve what the "
                            "store already holds)")
    add_dead_letter_arg(given)
    live = parser.add_argument_group(
        "live", "follow growing logs or receive kube-apiserver's audit webhook "
                "(--audit-webhook-*), and resume after a restart")
    live.add_argument("--follow", action="store_true",
                      help="keep reading the files as they grow (plain files only)")
    live.add_argument("--webhook", action="store_true",
                      help="receive EventList batches at POST /audit/webhook (the webhook "
                           "source of pipeline.yaml, added when absent)")
    live.add_argument("--webhook-spool", metavar="DIR",
                      help="where acknowledged batches are kept until read (default: "
                           "lunettes-spool)")
    live.add_argument("--webhook-token-file", metavar="FILE",
                      help="require Authorization: Bearer <the token in FILE> on the "
                           "receiver")
    live.add_argument("--checkpoint", metavar="FILE",
                      help="resume from this checkpoint and keep it current (follow and "
                           "webhook sources; overrides checkpoint.path)")
    output = parser.add_argument_group("output")
    add_apiserver_load_arg(output)
    output.add_argument("--store", metavar="PATH",
                        help="SQLite store file (overrides sinks.sqlite.path)")
    output.add_argument("--no-store", action="store_true", help="do not write the store")
    output.add_argument("--otlp-endpoint", metavar="URL",
                        help="also export traces over OTLP")
    output.add_argument("--otlp-protocol", choices=("grpc", "http/protobuf"),
                        help="OTLP protocol (default: grpc)")
    output.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="pod records handed to the sinks at once (default: 1, so "
                             "metrics move as soon as a Pod is final)")
    api = parser.add_argument_group("API", "the listener: /api/v1, the web page, /metrics, "
                                           "/healthz, /readyz and the webhook")
    api.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default: 127.0.0.1)")
    api.add_argument("--port", type=int, default=8080,
                     help="port to listen on; 0 picks a free one (default: 8080)")
    api.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate")
    api.add_argument("--tls-key", metavar="FILE", help="the certificate's private key")
    api.add_argument("--tls-client-ca", metavar="FILE",
                     help="require a client certificate signed by this CA (mutual TLS) "
                          "on the audit webhook; other paths accept connections without "
                          "one (a certificate shown is verified)")
    api.add_argument("--api-store", choices=("sqlite", "elasticsearch"), default="sqlite",
                     help="what the API reads: the SQLite store (default) or the indices "
                          "of the pipeline's elasticsearch sink")
    api.add_argument("--es-url", metavar="URL", action="append",
                     help="Elasticsearch to read (default: the elasticsearch sink's hosts, "
                          "else $ELASTICSEARCH_URL, else http://localhost:9200)")
    api.add_argument("--es-index-prefix", metavar="PREFIX",
                     help="index prefix to read (default: the elasticsearch sink's, "
                          "else lunettes)")
    api.add_argument("--jaeger-url", metavar="URL",
                     default=os.environ.get("LUNETTES_JAEGER_URL"),
                     help="Jaeger UI base URL for trace links, {URL}/trace/{trace id} "
                          "(default: $LUNETTES_JAEGER_URL)")
    api.add_argument("--api-token-file", metavar="FILE",
                     help="require Authorization: Bearer <the token in FILE> on /api/v1 "
                          "(also $LUNETTES_API_TOKEN)")
    api.add_argument("--auth-health", action="store_true",
                     help="require the token on /metrics, /healthz and /readyz too")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
        from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

        from lunettes.api.app import ServeState, create_app
        from lunettes.api.metrics import PipelineCollector
        from lunettes.api.tls import peer_certificate_protocol
        from lunettes.api.webhook import add_webhook
        from lunettes.sinks.prometheus import PrometheusSink
    except ImportError as exc:
        print(f"serve: needs an optional dependency ({exc.name}); install it with: "
              f"pip install 'lunettes[serve]'", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_client_ca and not args.tls_cert):
        print("serve: --tls-cert and --tls-key go together; --tls-client-ca needs them",
              file=sys.stderr)
        return 2
    # The one place a registry is wired to a server: everything else gets it injected.
    registry = CollectorRegistry()
    try:
        data = pipeline_data(args, env)
        sinks = dict(data.get("sinks") or {})
        # The first prometheus sink feeds /metrics; other prometheus/* instances (a
        # textfile for node_exporter...) stay ordinary sinks of the pipeline.
        wanted = [k for k in sinks if str(k).split("/")[0] == "prometheus"]
        key = wanted[0] if wanted else "prometheus"
        section = sinks.get(key) if wanted else None
        data["sinks"] = {k: v for k, v in sinks.items() if k != key}
        problems: list[str] = []
        origin = f"{args.config / 'pipeline.yaml'}: sinks"
        metrics = PrometheusSink.from_config(
            key, Section(section, f"{origin}.{key}", problems),
            BuildContext(args.config, env), registry=registry)
        api = _api_settings(args, data, env, problems)
        pipeline: Pipeline | None = None
        try:
            pipeline = Pipeline.from_config(args.config, data, env, [metrics])
            api.results = pipeline.results  # the API reads results by role
            if pipeline.requests is not None:  # the analysis of what the stream counts
                from lunettes.api.load_report import StreamReports

                api.load = StreamReports(pipeline.requests)
            if api.store is not None:
                api.store.results = pipeline.results
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return report_config_error(exc)
    except (OSError, ValueError) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    assert pipeline is not None
    state = ServeState(sources=pipeline.sources,
                       late=pipeline.late if pipeline.sources else None)
    reader: threading.Thread | None = None
    if pipeline.sources:
        pipeline.batch_size = max(1, args.batch_size)
        registry.register(PipelineCollector(pipeline, pipeline.bad))
        if pipeline.requests is not None:
            from lunettes.apiserver.metrics import RequestCollector

            registry.register(RequestCollector(pipeline.requests.counts))
        for source in pipeline.sources:
            for line in getattr(source, "skipped_files", ()):
                print(f"serve: not read: {line}", file=sys.stderr)
        reader = threading.Thread(target=_read, name="lunettes-reader",
                                  args=(pipeline, state), daemon=True)
    else:
        state.phase = "done"
        state.ready.set()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    try:
        sock = _listen(args.host, args.port)
    except OSError as exc:
        print(f"serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        pipeline.shutdown()
        return 2
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    store = api.store.kind if api.store is not None else "no store"
    scheme = "https" if args.tls_cert else "http"
    print(f"lunettes serve: listening on {scheme}://{shown}:{port}/metrics (web page "
          f"{scheme}://{shown}:{port}/, API /api/v1 over {store}, docs /docs)", file=sys.stderr,
          flush=True)
    if reader is not None:
        reader.start()
    app = create_app(registry, state, api)
    for source in pipeline.sources:
        if isinstance(source, WebhookSource):
            add_webhook(app, source, client_certificate=bool(args.tls_client_ca))
    tls: dict[str, Any] = {}
    if args.tls_cert:
        tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key}
        if args.tls_client_ca:  # verified when shown; required by the webhook route only
            tls |= {"ssl_ca_certs": args.tls_client_ca, "ssl_cert_reqs": ssl.CERT_OPTIONAL,
                    "http": peer_certificate_protocol()}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           lifespan="off", **tls))
    try:
        # uvicorn stops gracefully on SIGTERM, then raises the signal again: end through
        # the finally below (sinks flushed and shut down), not by the default handler.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        server.run(sockets=[sock])
    finally:
        pipeline.stop()
        if reader is not None and args.paths != [STDIN]:
            reader.join(timeout=10)
        pipeline.shutdown()
        if api.store is not None:
            api.store.close()
        sock.close()
    return 0


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _api_settings(args: argparse.Namespace, data: dict[str, Any], env: dict[str, str],
                  problems: list[str]) -> Any:
    """The API's store, reason codes, Jaeger link and auth, from the command line and the
    pipeline configuration. Raises OSError/ValueError for unreadable token files."""
    from lunettes.analyzers.diagnosisdefs import DiagnosisConfig
    from lunettes.analyzers.stagedefs import StageSet
    from lunettes.api.auth import BearerAuth, read_token_file
    from lunettes.api.load_report import LoadReports
    from lunettes.api.routes import ApiSettings
    from lunettes.api.store import PodStore, SQLiteStore

    sinks = dict(data.get("sinks") or {})
    store: PodStore | None = None
    if args.api_store == "elasticsearch":
        store = _es_store(args, sinks, env, problems)
    elif not args.no_store:
        section = sinks.get("sqlite") or {}
        path = args.store or (section.get("path") if isinstance(section, dict) else None)
        store = SQLiteStore(path or "lunettes.db")
    reasons = None
    try:
        names = tuple(s.name for s in StageSet.load(args.config / "stages.yaml").stages)
        reasons = DiagnosisConfig.load(args.config / "diagnosis.yaml", names)
    except ConfigError as exc:
        problems.extend(exc.problems)
    auth = None
    token = env.get("LUNETTES_API_TOKEN", "").strip()
    if args.api_token_file:
        token = read_token_file(args.api_token_file)
    if token:
        auth = BearerAuth(token, protect_health=args.auth_health)
    elif args.auth_health:
        raise ValueError("--auth-health needs a token (--api-token-file or "
                         "$LUNETTES_API_TOKEN)")
    files = [p for p in args.paths or [] if p != STDIN]
    return ApiSettings(store=store, jaeger_url=args.jaeger_url or None, reasons=reasons,
                       auth=auth, load=LoadReports(files) if files else None)


def _es_store(args: argparse.Namespace, sinks: dict[str, Any], env: dict[str, str],
              problems: list[str]) -> Any:
    try:
        from lunettes.api.es_store import ElasticsearchStore
        from lunettes.sinks.elasticsearch import ElasticsearchSink
    except ImportError as exc:
        raise ValueError(f"--api-store elasticsearch needs an optional dependency "
                         f"({exc.name}); install it with: pip install "
                         f"'lunettes[serve,elasticsearch]'") from None
    keys = [k for k in sinks if str(k).split("/")[0] == "elasticsearch"]
    section = dict(sinks[keys[0]] or {}) if keys else {}
    if args.es_url:
        section["hosts"] = list(args.es_url)
    if args.es_index_prefix:
        section["index_prefix"] = args.es_index_prefix
    key = keys[0] if keys else "elasticsearch"
    sink = ElasticsearchSink.from_config(
        key, Section(section, f"{args.config / 'pipeline.yaml'}: sinks.{key}", problems),
        BuildContext(args.config, env))
    return ElasticsearchStore.from_sink(sink)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY on accepted connections only
    # for sockets whose proto says TCP; without it, Nagle and delayed ACKs hold every
    # keep-alive answer (headers and body are two writes) about 40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _read(pipeline: Pipeline, state: Any) -> None:
    """The reader thread: run the pipeline over its sources, then keep serving what it
    made. Readiness follows the sources (see :class:`~lunettes.api.app.ServeState`)."""
    live = any(source.live for source in pipeline.sources)
    state.phase = "following" if live else "reading"
    if any(getattr(source, "paths", None) == [STDIN] for source in pipeline.sources):
        state.ready.set()
    try:
        pipeline.run()
    except Exception as exc:  # the server stays up to report it on /healthz
        state.phase, state.error = "failed", f"{type(exc).__name__}: {exc}"
        print(f"serve: reading the input failed: {state.error}", file=sys.stderr, flush=True)
        return
    if pipeline.stopping:  # the server is shutting down, not at the end of the input
        return
    state.details["pods"] = pipeline.stats.get("pods_final", 0)
    state.phase = "done"
    state.ready.set()
    print(f"lunettes serve: input read ({pipeline.stats.get('records', 0)} records, "
          f"{pipeline.stats.get('pods_final', 0)} pods); still serving", file=sys.stderr,
          flush=True)
