"""A lean OTLP/gRPC trace receiver for the benchmark: counts spans, keeps nothing.

Run as a subprocess: it prints ``PORT <n>`` once listening on 127.0.0.1, then serves
until its stdin closes, and prints ``{"requests": r, "spans": s}`` as its last line.
(tests/otlp_receiver.py keeps every span for assertions; at 10^6 events that would cost
the receiver more memory and time than the benchmark should spend on it.)
"""

from __future__ import annotations

import json
import sys
import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


class _Counter(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.spans = 0

    def Export(self, request: ExportTraceServiceRequest, context: Any
               ) -> ExportTraceServiceResponse:
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.requests += 1
            self.spans += n
        return ExportTraceServiceResponse()


def main() -> int:
    counter = _Counter()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(counter, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.stop(grace=1.0)
    print(json.dumps({"requests": counter.requests, "spans": counter.spans}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
