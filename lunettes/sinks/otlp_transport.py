"""OTLP transports: one request out, a result or a TransportError (retryable or not) back.

A request is an encoded ``ExportTraceServiceRequest`` (:mod:`lunettes.sinks.otlp_encode`),
sent as it is: the body of an HTTP POST, or the message of a unary gRPC call to
``TraceService/Export``. Retrying is the sink's business; a transport makes exactly one
attempt per ``send``, bounded by its timeout, and ``interrupt`` aborts it from another
thread.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from lunettes import __version__

RETRYABLE_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
"""The OTLP specification's retryable codes, and the server errors (HTTP 5xx's kin)."""
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
"""The sink spaces its own retries: gRPC's reconnect backoff (up to 120 s by default) would
fail them without trying the collector that came back."""
HOLD_GRPC_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
HOLD_HTTP_STATUSES = frozenset({401, 403})
USER_AGENT = f"lunettes/{__version__}"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class TransportError(Exception):
    """One failed attempt. ``retryable``: trying again may succeed (connection failures,
    timeouts, 429, 5xx); ``hold``: not now, but keep the data (refused credentials);
    neither: refused for good (any other 4xx, an invalid request)."""

    def __init__(self, message: str, retryable: bool, retry_after_s: float | None = None,
                 hold: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.hold = hold


@dataclass(frozen=True)
class ExportResult:
    """A successful export; ``rejected_spans`` counts what the receiver refused anyway."""

    rejected_spans: int = 0
    message: str = ""


class Transport(Protocol):
    target: str

    def send(self, request: bytes, timeout_s: float) -> ExportResult:
        """Send one encoded ExportTraceServiceRequest."""
        ...

    def interrupt(self) -> None:
        """Abort a request in progress and refuse later ones (from another thread: the
        sink is closing, and nothing may reach the collector after it closed)."""
        ...

    def close(self) -> None: ...


def _result(response: ExportTraceServiceResponse) -> ExportResult:
    partial = response.partial_success
    return ExportResult(rejected_spans=partial.rejected_spans, message=partial.error_message)


def has_scheme(endpoint: str) -> bool:
    return "://" in endpoint


class GrpcTransport:
    """OTLP/gRPC over one channel, reused for every request until ``close``."""

    def __init__(self, endpoint: str, headers: dict[str, str], insecure: bool) -> None:
        if has_scheme(endpoint):
            parts = urlsplit(endpoint)
            self.target = parts.netloc
        else:
            self.target = endpoint.split("/", 1)[0]
        if insecure:
            self._channel = grpc.insecure_channel(self.target, CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(self.target, grpc.ssl_channel_credentials(),
                                                CHANNEL_OPTIONS)
        self._export = self._channel.unary_unary(  # no request serializer: bytes as they are
            EXPORT_METHOD, response_deserializer=ExportTraceServiceResponse.FromString)
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())
        self._lock = threading.Lock()
        self._call: grpc.Future | None = None
        self._interrupted = False

    def send(self, request: bytes, timeout_s: float) -> ExportResult:
        with self._lock:
            if self._interrupted:
                raise TransportError("interrupted: the sink is closing", retryable=True)
            call = self._export.future(request, timeout=timeout_s, metadata=self._metadata)
            self._call = call
        try:
            response = call.result()
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise TransportError(
                f"gRPC {code.name}: {details}", retryable=code in RETRYABLE_GRPC_CODES,
                hold=code in HOLD_GRPC_CODES,
            ) from exc
        except grpc.FutureCancelledError as exc:
            raise TransportError("gRPC call cancelled", retryable=True) from exc
        finally:
            with self._lock:
                self._call = None
        return _result(response)

    def interrupt(self) -> None:
        with self._lock:
            self._interrupted = True
            call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        self.interrupt()
        self._channel.close()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


class HttpTransport:
    """OTLP/HTTP with binary protobuf bodies, POSTed with http.client (no proxy), one
    connection per request; ``timeout_s`` bounds connecting and every read."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.target = url
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {
            "User-Agent": USER_AGENT,
            **headers,
            "Content-Type": "application/x-protobuf",
        }
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._interrupted = False

    def send(self, request: bytes, timeout_s: float) -> ExportResult:
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout_s,
                context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
        try:
            connection.connect()
            with self._lock:  # connected: from here on interrupt() can cut the socket
                if self._interrupted:
                    raise ConnectionAbortedError("interrupted: the sink is closing")
                self._connection = connection
            connection.request("POST", self._path, body=request, headers=self._headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"connection failed: {exc or type(exc).__name__}",
                                 retryable=True) from exc
        finally:
            with self._lock:
                self._connection = None
            connection.close()
        status = response.status
        if not 200 <= status < 300:
            detail = body[:200].decode("utf-8", "replace").strip()
            raise TransportError(
                f"HTTP {status} {response.reason}" + (f": {detail}" if detail else ""),
                retryable=status == 429 or status >= 500,
                retry_after_s=_retry_after(response.getheader("Retry-After")),
                hold=status in HOLD_HTTP_STATUSES,
            )
        response_message = ExportTraceServiceResponse()
        try:
            response_message.ParseFromString(body)
        except Exception:  # a receiver may answer with an empty or non-protobuf body
            return ExportResult()
        return _result(response_message)

    def interrupt(self) -> None:
        """Abort a request in progress and refuse later ones (from another thread)."""
        with self._lock:
            self._interrupted = True
            connection = self._connection
        sock = connection.sock if connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.interrupt()
