"""OTLP transports: one request out, a result or a TransportError (retryable or not) back.

A request is an encoded ``ExportTraceServiceRequest`` (:mod:`lunettes.sinks.otlp_encode`),
sent as it is: the body of an HTTP POST, or the message of a unary gRPC call to
``TraceService/Export``. Retrying is the sink's business; a transport makes exactly one
attempt per ``send``.
"""

from __future__ import annotations

import urllib.error
import urllib.request
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
    }
)
RETRYABLE_HTTP_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = f"lunettes/{__version__}"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class TransportError(Exception):
    """One failed attempt; ``retryable`` says whether trying again may succeed."""

    def __init__(self, message: str, retryable: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


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
            self._channel = grpc.insecure_channel(self.target)
        else:
            self._channel = grpc.secure_channel(self.target, grpc.ssl_channel_credentials())
        self._export = self._channel.unary_unary(  # no request serializer: bytes as they are
            EXPORT_METHOD, response_deserializer=ExportTraceServiceResponse.FromString)
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())

    def send(self, request: bytes, timeout_s: float) -> ExportResult:
        try:
            response = self._export(request, timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise TransportError(
                f"gRPC {code.name}: {details}", retryable=code in RETRYABLE_GRPC_CODES
            ) from exc
        return _result(response)

    def close(self) -> None:
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
    """OTLP/HTTP with binary protobuf bodies, POSTed with urllib (proxies not used)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.target = url
        self._headers = {
            "User-Agent": USER_AGENT,
            **headers,
            "Content-Type": "application/x-protobuf",
        }
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(self, request: bytes, timeout_s: float) -> ExportResult:
        http_request = urllib.request.Request(
            self.target, data=request, headers=self._headers, method="POST"
        )
        try:
            with self._opener.open(http_request, timeout=timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace") if exc.fp else ""
            raise TransportError(
                f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else ""),
                retryable=exc.code in RETRYABLE_HTTP_STATUSES,
                retry_after_s=_retry_after(exc.headers.get("Retry-After")),
            ) from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            retryable = isinstance(reason, ConnectionError | TimeoutError)
            raise TransportError(f"connection failed: {reason}", retryable=retryable) from exc
        except (ConnectionError, TimeoutError) as exc:
            raise TransportError(f"connection failed: {exc}", retryable=True) from exc
        response_message = ExportTraceServiceResponse()
        try:
            response_message.ParseFromString(body)
        except Exception:  # a receiver may answer with an empty or non-protobuf body
            return ExportResult()
        return _result(response_message)

    def close(self) -> None:
        pass
