"""A real OTLP trace receiver for tests: gRPC and HTTP/protobuf on 127.0.0.1.

Both servers decode ExportTraceServiceRequest and store what arrived. Failures can be
injected to exercise retries and outages: ``fail_next`` (the next n requests), ``fail``
(every request until ``recover``: an HTTP status and its gRPC kin, or ``hang``: take the
request and never answer; a hung request is answered UNAVAILABLE/503 and not stored on
``recover``), ``go_down``/``come_back`` (connections refused, then the same ports again).
``wait_for_spans`` blocks on a Condition; ``spans_per_trace`` counts what arrived.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def any_value(value: AnyValue) -> Any:
    """The Python value of an OTLP AnyValue (scalars only)."""
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    """A repeated KeyValue field as a dict."""
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class ReceivedSpan:
    """One span as received, with its resource and scope."""

    span: Span
    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    protocol: str

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)

    @property
    def name(self) -> str:
        return self.span.name


@dataclass
class ReceivedRequest:
    protocol: str
    request: ExportTraceServiceRequest
    headers: dict[str, str]
    path: str = ""


@dataclass
class _Faults:
    remaining: int = 0
    grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    http_status: int = 503
    retry_after: str | None = None
    reject_spans: int = 0


@dataclass
class OTLPReceiver:
    """Start with ``start()``, stop with ``stop()``; endpoints are ``http://127.0.0.1:N``."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    attempts: int = 0
    """Every request that reached a server, failed or not."""
    hung: int = 0
    """Requests held by ``fail("hang")`` so far."""

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._faults = _Faults()
        self._hang = threading.Event()
        self._hang.set()
        self._hanging = False
        self._grpc_server: grpc.Server | None = None
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.grpc_port = 0
        self.http_port = 0

    # -- control -------------------------------------------------------------------------

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def fail_next(
        self,
        n: int,
        grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        http_status: int = 503,
        retry_after: str | None = None,
    ) -> None:
        """Fail the next ``n`` requests (either protocol) with this status."""
        with self._cond:
            self._faults = _Faults(n, grpc_code, http_status, retry_after)

    def fail(self, mode: str | int, retry_after: str | None = None) -> None:
        """Fail every request until :meth:`recover`: ``"hang"`` (take it, never answer),
        or an HTTP status (429 -> RESOURCE_EXHAUSTED, 5xx -> UNAVAILABLE/INTERNAL)."""
        with self._cond:
            if mode == "hang":
                self._hang.clear()
                self._hanging = True
                return
            status = int(mode)
            code = {429: grpc.StatusCode.RESOURCE_EXHAUSTED,
                    503: grpc.StatusCode.UNAVAILABLE}.get(status, grpc.StatusCode.INTERNAL)
            self._faults = _Faults(10**9, code, status, retry_after)

    def recover(self) -> None:
        """Take requests again: injected failures end, hung requests are let go."""
        with self._cond:
            self._faults = _Faults()
            self._hanging = False
            self._hang.set()

    def go_down(self) -> None:
        """Stop listening: connections are refused until :meth:`come_back`."""
        self.stop()

    def come_back(self) -> None:
        """Listen again on the same ports."""
        self.start(self.grpc_port, self.http_port)

    def spans_per_trace(self) -> Counter[bytes]:
        """How many spans arrived per trace id."""
        with self._cond:
            return Counter(s.span.trace_id for s in self.spans)

    def wait_for_hung(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``n`` requests are being held by ``fail("hang")``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.hung >= n, timeout):
                raise TimeoutError(f"{self.hung} of {n} requests hung within {timeout}s")

    def reject_next(self, spans: int) -> None:
        """Answer the next successful request with a partial success rejecting ``spans``."""
        with self._cond:
            self._faults.reject_spans = spans

    def wait_for_spans(self, n: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """Block until at least ``n`` spans arrived; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.spans) >= n, timeout):
                raise TimeoutError(f"{len(self.spans)} of {n} spans arrived within {timeout}s")
            return list(self.spans)

    def wait_for_attempts(self, n: int, timeout: float = 5.0) -> int:
        """Block until at least ``n`` requests reached a server (failed ones included)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.attempts >= n, timeout):
                raise TimeoutError(f"{self.attempts} of {n} requests arrived within {timeout}s")
            return self.attempts

    def start(self, grpc_port: int = 0, http_port: int = 0) -> OTLPReceiver:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self), server)
        self.grpc_port = server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        server.start()
        self._grpc_server = server

        http_server = ThreadingHTTPServer(("127.0.0.1", http_port), _handler_class(self))
        http_server.daemon_threads = True
        self.http_port = http_server.server_address[1]
        self._http_thread = threading.Thread(
            target=http_server.serve_forever, kwargs={"poll_interval": 0.05},
            name="otlp-http-receiver", daemon=True,
        )
        self._http_thread.start()
        self._http_server = http_server
        return self

    def stop(self) -> None:
        self._hang.set()  # let hung handlers end
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=None).wait()
            self._grpc_server = None
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
            self._http_server = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None

    # -- called by the servers -----------------------------------------------------------

    def _admit(self) -> _Faults | None:
        """Count an attempt; the fault to answer with, or None to accept. A hung request
        waits here until recover (or stop), then fails with UNAVAILABLE/503."""
        with self._cond:
            self.attempts += 1
            self._cond.notify_all()
            hang = self._hanging
            if hang:
                self.hung += 1
        if hang:
            self._hang.wait()
            return _Faults(1)
        with self._cond:
            if self._faults.remaining > 0:
                self._faults.remaining -= 1
                return self._faults
            return None

    def _store(
        self, protocol: str, request: ExportTraceServiceRequest, headers: dict[str, str],
        path: str = "",
    ) -> ExportTraceServiceResponse:
        with self._cond:
            self.requests.append(ReceivedRequest(protocol, request, headers, path))
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append(
                            ReceivedSpan(span, resource, ss.scope.name, ss.scope.version, protocol)
                        )
            response = ExportTraceServiceResponse()
            if self._faults.reject_spans:
                response.partial_success.CopyFrom(
                    ExportTracePartialSuccess(
                        rejected_spans=self._faults.reject_spans, error_message="test rejection"
                    )
                )
                self._faults.reject_spans = 0
            self._cond.notify_all()
            return response


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OTLPReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ExportTraceServiceResponse:
        fault = self.receiver._admit()
        if fault is not None:
            context.abort(fault.grpc_code, "injected failure")
        headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        return self.receiver._store("grpc", request, headers)


def _handler_class(receiver: OTLPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def _reply(self, status: int, body: bytes = b"", extra: dict[str, str] | None = None):
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/traces":
                self._reply(404)
                return
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self._reply(415)
                return
            fault = receiver._admit()
            if fault is not None:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else None
                self._reply(fault.http_status, b"injected failure", extra)
                return
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception:
                self._reply(400)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            response = receiver._store("http", request, headers, self.path)
            self._reply(200, response.SerializeToString())

    return Handler
