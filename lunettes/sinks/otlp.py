"""OTLPSink: pod delivery traces to any OpenTelemetry collector, over gRPC or HTTP.

Each pod record becomes one trace (trace id = the pod UID's 128 bits) with one span per
stage; see :mod:`lunettes.model.spans` for the mapping, :mod:`lunettes.sinks.otlp_encode`
for the protobuf bytes and :mod:`lunettes.sinks.otlp_transport` for the wire.

``export`` only encodes: the requests are sent by a background thread through
:class:`~lunettes.sinks.delivery.SpooledDelivery`, with a bounded queue and a disk spool
(``spool_dir``, the encoded requests as they are sent), so a collector that is down,
hung, overloaded or failing never stalls the pipeline and loses nothing: what it does
not take waits in the spool and is sent once it is back, by this run or the next one with
the same ``spool_dir``; a request it took is never sent again. Connection failures,
timeouts, 429 and 5xx (gRPC: the specification's retryable codes, INTERNAL and UNKNOWN)
are retried with exponential backoff and jitter (at least the Retry-After asked for)
within ``timeout_s``, then spooled; refused credentials (401/403, UNAUTHENTICATED,
PERMISSION_DENIED) are spooled at once; any other refusal (4xx, INVALID_ARGUMENT...) and
spans a partial success rejects are logged and counted, never re-sent. ``lost`` counts the
pod records refused or dropped by the spool's size limit (see :mod:`lunettes.cli.exitcodes`).

This module imports grpcio and opentelemetry-proto (the ``otlp`` extra, for the
receiver's answers); nothing else in lunettes imports it, so the core works without them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lunettes.config.errors import Section
from lunettes.model.record import PodRecord
from lunettes.model.results import Results
from lunettes.model.spans import pod_trace
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError
from lunettes.sinks.delivery import Outcome, Payload, SpooledDelivery, SpooledSink
from lunettes.sinks.otlp_encode import OTLPEncoder
from lunettes.sinks.otlp_transport import (
    GrpcTransport,
    HttpTransport,
    Transport,
    TransportError,
    has_scheme,
)
from lunettes.sinks.spool import ROOT, DiskSpool, default_dir

log = logging.getLogger(__name__)

GRPC = "grpc"
HTTP_PROTOBUF = "http/protobuf"
PROTOCOLS = (GRPC, HTTP_PROTOBUF)
DEFAULT_ENDPOINTS = {GRPC: "http://localhost:4317", HTTP_PROTOBUF: "http://localhost:4318"}
TRACES_PATH = "/v1/traces"

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_RETRIES = 5
DEFAULT_SERVICE_NAME = "lunettes"
DEFAULT_QUEUE_SIZE = 64
DEFAULT_SPOOL_MAX_MB = 512.0
SPOOL_SUFFIX = ".otlp"


def traces_url(endpoint: str, append_path: bool = True, insecure: bool = True) -> str:
    """The OTLP/HTTP URL to POST to: ``<endpoint>/v1/traces`` unless told to use it as is
    (a traces-specific endpoint) or it already ends with that path."""
    if not has_scheme(endpoint):
        endpoint = ("http://" if insecure else "https://") + endpoint
    if not append_path or endpoint.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH


def parse_headers(text: str) -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` format: comma-separated ``key=value``, URL-encoded."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[unquote(key.strip())] = unquote(value.strip())
    return headers


def _env_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() == "true"


class OTLPSink(SpooledSink):
    """Exports pod records as OTLP traces; see the module docstring.

    ``endpoint`` defaults to the local collector for ``protocol``; for ``http/protobuf``
    ``/v1/traces`` is appended unless ``append_traces_path`` is false or the endpoint
    already ends with it. ``insecure`` (plaintext gRPC, ``http://`` for a scheme-less
    HTTP endpoint) defaults to true for ``http://`` endpoints. ``timeout_s`` bounds each
    request including its retries; ``batch_size`` is the number of pods per request;
    ``max_retries`` caps retries of retryable failures. ``link_as_parent`` makes a
    Pod's root span the child of the caller's span named by its trace context annotation
    (in the caller's trace), instead of linking to it. ``queue_size`` requests wait in
    memory for the sending thread; ``spool_dir`` holds at most ``spool_max_mb`` of
    requests the collector did not take. ``backoff_base_s``/``backoff_max_s`` space the
    retries and the probes of a collector that is down.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        protocol: str = GRPC,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        insecure: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        service_name: str = DEFAULT_SERVICE_NAME,
        *,
        spool_dir: str | Path = f"{ROOT}/otlp",
        spool_max_mb: float = DEFAULT_SPOOL_MAX_MB,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        append_traces_path: bool = True,
        link_as_parent: bool = False,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        results: Results | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            supported = ", ".join(PROTOCOLS)
            raise ValueError(f"unsupported protocol {protocol!r}; supported: {supported}")
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if timeout_s <= 0 or spool_max_mb <= 0:
            raise ValueError("timeout_s and spool_max_mb must be positive")
        endpoint = endpoint or DEFAULT_ENDPOINTS[protocol]
        if insecure is None:
            insecure = endpoint.lower().startswith("http://")
        self.protocol = protocol
        self.headers = dict(headers or {})
        self.timeout_s = float(timeout_s)
        self.insecure = insecure
        self.batch_size = batch_size
        self.service_name = service_name
        self.link_as_parent = link_as_parent
        self.results = results
        """Which results play the SLO and diagnosis roles (the root span's attributes)."""
        self._encoder = OTLPEncoder(service_name)
        transport: Transport
        if protocol == GRPC:
            transport = GrpcTransport(endpoint, self.headers, insecure)
        else:
            transport = HttpTransport(traces_url(endpoint, append_traces_path, insecure),
                                      self.headers)
        self.transport = transport
        self.endpoint = transport.target
        self._sender = _Sender(transport, max_retries, backoff_base_s, backoff_max_s)
        self._skipped = 0
        self._delivery = SpooledDelivery(
            f"OTLP collector {self.endpoint}", self._sender,
            DiskSpool(spool_dir, int(spool_max_mb * 2**20), SPOOL_SUFFIX),
            queue_size=queue_size, timeout_s=self.timeout_s,
            backoff_base_s=max(backoff_base_s, 0.01), backoff_max_s=max(backoff_max_s, 0.01))
        self._closed = False

    @property
    def stats(self) -> dict[str, int]:
        """Spans ``exported``, ``refused`` for good (``rejected`` by a partial success
        among them), ``spooled``, ``drained`` from the spool, ``dropped`` by its limit;
        ``requests``, ``retries``, ``skipped_records`` (no time to place a span)."""
        sender, delivery = self._sender.stats, self._delivery.stats
        return {
            "exported_spans": sender["exported"], "refused_spans": sender["refused"],
            "rejected_spans": sender["rejected"], "spooled_spans": delivery["spooled"],
            "drained_spans": delivery["drained"], "dropped_spans": delivery["dropped"],
            "requests": sender["requests"], "retries": sender["retries"],
            "skipped_records": self._skipped,
        }

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> OTLPSink:
        """Build from a ``type: otlp`` sink section; problems go to ``section.problems``.

        Keys: endpoint, protocol, headers, timeout_s, insecure, batch_size, max_retries,
        service_name, spool_dir (default ``.lunettes-spool/<sink name>``, relative to the
        working directory), spool_max_mb, queue_size. Unset keys fall back to the
        OTEL_EXPORTER_OTLP_* variables of ``context.env`` (traces-specific first), then to
        built-in defaults. A section with problems still returns a sink (with defaults in
        place of the bad values): the caller raises
        :class:`~lunettes.config.errors.ConfigError` for all problems.
        """
        env = context.env

        protocol_origin = ""
        protocol = section.get("protocol", None, str)
        if protocol is None:
            protocol = GRPC
            for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
                if env.get(var):
                    protocol, protocol_origin = env[var].strip(), f" (from {var})"
                    break
        if protocol not in PROTOCOLS:
            section.problem(
                "protocol",
                f"unsupported protocol {protocol!r}{protocol_origin}; "
                f"supported: {', '.join(PROTOCOLS)}",
            )
            protocol = GRPC

        append_path = True
        endpoint = section.get("endpoint", None, str)
        if endpoint is None:
            if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
                endpoint = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].strip()
                append_path = False  # signal-specific endpoints are used as is
            elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
                endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].strip()
        if endpoint is not None and has_scheme(endpoint):
            scheme = urlsplit(endpoint).scheme.lower()
            if scheme not in ("http", "https"):
                section.problem("endpoint", f"unsupported scheme {scheme!r} in {endpoint!r}; "
                                            "use http:// or https://")
                endpoint = None

        headers: dict[str, str] = {}
        for var in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
            if env.get(var):
                headers.update(parse_headers(env[var]))
        configured = section.get("headers", {}, Mapping)
        for key, value in configured.items():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                headers[str(key)] = str(value)
            else:
                section.problem(f"headers.{key}", f"expected a string, got {value!r}")

        timeout_default = DEFAULT_TIMEOUT_S
        for var in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
            if env.get(var):
                try:
                    timeout_default = int(env[var]) / 1000.0  # milliseconds per the spec
                except ValueError:
                    section.problem("timeout_s", f"{var}={env[var]!r} is not milliseconds")
                break
        timeout_s = _positive(section, "timeout_s", section.get("timeout_s", timeout_default,
                                                                 float), DEFAULT_TIMEOUT_S)

        insecure_default = None
        if endpoint is None or not has_scheme(endpoint):
            insecure_default = _env_bool(
                env.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
                or env.get("OTEL_EXPORTER_OTLP_INSECURE")
            )
        insecure = section.get("insecure", insecure_default, bool)

        batch_size = section.get("batch_size", DEFAULT_BATCH_SIZE, int)
        if batch_size < 1:
            section.problem("batch_size", f"must be at least 1, got {batch_size}")
            batch_size = DEFAULT_BATCH_SIZE
        max_retries = section.get("max_retries", DEFAULT_MAX_RETRIES, int)
        if max_retries < 0:
            section.problem("max_retries", f"must not be negative, got {max_retries}")
            max_retries = DEFAULT_MAX_RETRIES
        service_name = section.get("service_name", DEFAULT_SERVICE_NAME, str)
        if not service_name:
            section.problem("service_name", "must not be empty")
            service_name = DEFAULT_SERVICE_NAME
        link_as_parent = section.get("link_as_parent", False, bool)
        spool_dir = section.get("spool_dir", default_dir(name), str)
        spool_max_mb = _positive(section, "spool_max_mb",
                                 section.get("spool_max_mb", DEFAULT_SPOOL_MAX_MB, float),
                                 DEFAULT_SPOOL_MAX_MB)
        queue_size = section.get("queue_size", DEFAULT_QUEUE_SIZE, int)
        if queue_size < 1:
            section.problem("queue_size", f"must be at least 1, got {queue_size}")
            queue_size = DEFAULT_QUEUE_SIZE
        section.check_unknown()

        return cls(
            endpoint=endpoint,
            protocol=protocol,
            headers=headers,
            timeout_s=timeout_s,
            insecure=insecure,
            batch_size=batch_size,
            max_retries=max_retries,
            service_name=service_name,
            spool_dir=spool_dir,
            spool_max_mb=spool_max_mb,
            queue_size=queue_size,
            append_traces_path=append_path,
            link_as_parent=link_as_parent,
            results=context.results,
        )

    # -- Sink contract -------------------------------------------------------------------

    def export(self, batch: Sequence[PodRecord]) -> None:
        """Encode the records, ``batch_size`` pods per request, and hand the requests to
        the sending thread (or the spool); never waits on the collector."""
        if self._closed:
            raise SinkClosedError("OTLP sink is shut down")
        encode = self._encoder.resource_spans
        chunk: list[bytes] = []
        n_spans = 0
        for record in batch:
            trace = pod_trace(record, self.link_as_parent, self.results)
            if trace is None:
                self._skipped += 1
                log.debug("pod %s/%s (%s) has no time to place a span; skipped",
                          record.namespace, record.name, record.uid)
                continue
            chunk.append(encode(trace))
            n_spans += len(trace.spans)
            if len(chunk) >= self.batch_size:
                self._delivery.submit(Payload(b"".join(chunk), n_spans, len(chunk)))
                chunk, n_spans = [], 0
        if chunk:
            self._delivery.submit(Payload(b"".join(chunk), n_spans, len(chunk)))

    def shutdown(self) -> None:
        """Flush (unless the collector is down, within ``timeout_s``), then stop: what is
        left is spooled for the next run. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._delivery.finish(self.timeout_s)
        self.transport.close()


class _Sender:
    """Sends one request with retries (see :class:`~lunettes.sinks.delivery.Sender`)."""

    def __init__(self, transport: Transport, max_retries: int, backoff_base_s: float,
                 backoff_max_s: float) -> None:
        self.transport = transport
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stats: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._random = random.Random()

    def interrupt(self) -> None:
        self._stopping.set()
        self.transport.interrupt()

    def send(self, payload: Payload, deadline: float, retry: bool) -> Outcome:
        attempt = 0
        n_spans, n_pods = payload.count, payload.pods
        while True:
            self.stats["requests"] += 1
            try:
                result = self.transport.send(payload.data, max(deadline - time.monotonic(),
                                                               0.001))
            except TransportError as exc:
                if exc.retryable and retry and self._backoff(exc, attempt, deadline):
                    attempt += 1
                    self.stats["retries"] += 1
                    continue
                if exc.retryable or exc.hold:
                    return Outcome(rest=payload, reason=str(exc),
                                   retry_after_s=exc.retry_after_s)
                self.stats["refused"] += n_spans
                log.error("OTLP collector %s refused %d spans of %d pods: %s; not retried",
                          self.transport.target, n_spans, n_pods, exc)
                return Outcome(refused_pods=n_pods)
            rejected = min(result.rejected_spans, n_spans)
            self.stats["exported"] += n_spans - rejected
            if not rejected:
                return Outcome()
            self.stats["rejected"] += rejected
            self.stats["refused"] += rejected
            log.warning("OTLP collector %s rejected %d of %d spans: %s; not retried",
                        self.transport.target, rejected, n_spans,
                        result.message or "no reason given")
            return Outcome(refused_pods=min(n_pods, rejected))

    def _backoff(self, exc: TransportError, attempt: int, deadline: float) -> bool:
        """Wait before retry ``attempt + 1``; False when no retry is allowed."""
        if attempt >= self.max_retries:
            return False
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = cap * self._random.uniform(0.5, 1.0)
        if exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        if time.monotonic() + delay >= deadline:
            return False
        return not self._stopping.wait(delay)


def _positive(section: Section, key: str, value: float, default: float) -> float:
    if value <= 0:
        section.problem(key, f"must be positive, got {value}")
        return default
    return float(value)
