"""OTLPSink: pod delivery traces to any OpenTelemetry collector, over gRPC or HTTP.

Each pod record becomes one trace (trace id = the pod UID's 128 bits) with one span per
stage; see :mod:`lunettes.model.spans` for the mapping, :mod:`lunettes.sinks.otlp_encode`
for the protobuf bytes and :mod:`lunettes.sinks.otlp_transport` for the wire. Export is
synchronous: ``export`` returns once every request of the batch was delivered or given up
on (logged and counted in ``stats``), so ``force_flush`` has nothing pending and reports
whether nothing was lost.

This module imports grpcio and opentelemetry-proto (the ``otlp`` extra, for the
receiver's answers); nothing else in lunettes imports it, so the core works without them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from lunettes.config.errors import Section
from lunettes.model.record import PodRecord
from lunettes.model.spans import pod_trace
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError
from lunettes.sinks.otlp_encode import OTLPEncoder
from lunettes.sinks.otlp_transport import (
    GrpcTransport,
    HttpTransport,
    Transport,
    TransportError,
    has_scheme,
)

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


class OTLPSink:
    """Exports pod records as OTLP traces.

    ``endpoint`` defaults to the local collector for ``protocol``; for ``http/protobuf``
    ``/v1/traces`` is appended unless ``append_traces_path`` is false or the endpoint
    already ends with it. ``insecure`` (plaintext gRPC, ``http://`` for a scheme-less
    HTTP endpoint) defaults to true for ``http://`` endpoints. ``timeout_s`` bounds each
    request including its retries; ``batch_size`` is the number of pods per request;
    ``max_retries`` caps retries of retryable failures (exponential backoff with jitter).
    ``link_as_parent`` makes a Pod's root span the child of the caller's span named by
    its trace context annotation (in the caller's trace), instead of linking to it.
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
        append_traces_path: bool = True,
        link_as_parent: bool = False,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
    ) -> None:
        if protocol not in PROTOCOLS:
            supported = ", ".join(PROTOCOLS)
            raise ValueError(f"unsupported protocol {protocol!r}; supported: {supported}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        endpoint = endpoint or DEFAULT_ENDPOINTS[protocol]
        if insecure is None:
            insecure = endpoint.lower().startswith("http://")
        self.protocol = protocol
        self.headers = dict(headers or {})
        self.timeout_s = float(timeout_s)
        self.insecure = insecure
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.service_name = service_name
        self.link_as_parent = link_as_parent
        self._encoder = OTLPEncoder(service_name)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.transport: Transport
        if protocol == GRPC:
            self.transport = GrpcTransport(endpoint, self.headers, insecure)
        else:
            self.transport = HttpTransport(
                traces_url(endpoint, append_traces_path, insecure), self.headers
            )
        self.endpoint = self.transport.target
        self.stats: dict[str, int] = {
            "exported_spans": 0,
            "failed_spans": 0,
            "rejected_spans": 0,
            "requests": 0,
            "retries": 0,
            "skipped_records": 0,
        }
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = False

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> OTLPSink:
        """Build from a ``type: otlp`` sink section; problems go to ``section.problems``.

        Keys: endpoint, protocol, headers, timeout_s, insecure, batch_size, max_retries,
        service_name. Unset keys fall back to the OTEL_EXPORTER_OTLP_* variables of
        ``context.env`` (traces-specific first), then to built-in defaults. A section
        with problems still returns a sink (with defaults in place of the bad values):
        the caller raises :class:`~lunettes.config.errors.ConfigError` for all problems.
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
            append_traces_path=append_path,
            link_as_parent=link_as_parent,
        )

    # -- Sink contract -------------------------------------------------------------------

    def export(self, batch: Sequence[PodRecord]) -> None:
        """Send the records, ``batch_size`` pods per request; failures are logged and
        counted in ``stats['failed_spans']``, never raised."""
        if self._closed:
            raise SinkClosedError("OTLP sink is shut down")
        with self._lock:
            if self._closed:
                raise SinkClosedError("OTLP sink is shut down")
            encode = self._encoder.resource_spans
            chunk: list[bytes] = []
            n_spans = 0
            for record in batch:
                trace = pod_trace(record, self.link_as_parent)
                if trace is None:
                    self.stats["skipped_records"] += 1
                    log.debug("pod %s/%s (%s) has no time to place a span; skipped",
                              record.namespace, record.name, record.uid)
                    continue
                chunk.append(encode(trace))
                n_spans += len(trace.spans)
                if len(chunk) >= self.batch_size:
                    self._send(b"".join(chunk), len(chunk), n_spans)
                    chunk, n_spans = [], 0
            if chunk:
                self._send(b"".join(chunk), len(chunk), n_spans)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Nothing is ever pending (export is synchronous): whether no span was lost."""
        return self.stats["failed_spans"] == 0

    def shutdown(self) -> None:
        """Stop retrying, wait for an export in progress, close the channel. Idempotent."""
        if self._closed:
            return
        self._stopping.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.transport.close()

    def __enter__(self) -> OTLPSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # -- sending -------------------------------------------------------------------------

    def _send(self, request: bytes, n_pods: int, n_spans: int) -> None:
        """Send one encoded ExportTraceServiceRequest, retrying as configured."""
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            self.stats["requests"] += 1
            remaining = deadline - time.monotonic()
            try:
                result = self.transport.send(request, max(remaining, 0.001))
            except TransportError as exc:
                reason = self._give_up_reason(exc, attempt, deadline)
                if reason is None:
                    attempt += 1
                    self.stats["retries"] += 1
                    continue
                self.stats["failed_spans"] += n_spans
                log.error(
                    "OTLP export to %s failed after %d attempt(s): %s (%s); dropped %d spans "
                    "of %d pods", self.endpoint, attempt + 1, exc, reason, n_spans, n_pods,
                )
                return
            rejected = min(result.rejected_spans, n_spans)
            if rejected:
                self.stats["rejected_spans"] += rejected
                self.stats["failed_spans"] += rejected
                log.warning("OTLP receiver %s rejected %d of %d spans: %s",
                            self.endpoint, rejected, n_spans, result.message or "no reason given")
            self.stats["exported_spans"] += n_spans - rejected
            return

    def _give_up_reason(self, exc: TransportError, attempt: int, deadline: float) -> str | None:
        """Wait the backoff and return None to retry, or say why not to."""
        if not exc.retryable:
            return "not retryable"
        if attempt >= self.max_retries:
            return f"max_retries={self.max_retries} reached"
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = cap * random.uniform(0.5, 1.0)
        if exc.retry_after_s is not None:
            delay = max(delay, exc.retry_after_s)
        if time.monotonic() + delay >= deadline:
            return f"timeout_s={self.timeout_s:g} would pass before the next attempt"
        if self._stopping.wait(delay):
            return "sink shutting down"
        return None


def _positive(section: Section, key: str, value: float, default: float) -> float:
    if value <= 0:
        section.problem(key, f"must be positive, got {value}")
        return default
    return float(value)
