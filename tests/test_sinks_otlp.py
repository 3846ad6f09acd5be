"""OTLPSink over real gRPC and HTTP to a receiver on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpc", reason="needs the otlp extra")

import grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_receiver import OTLPReceiver, ReceivedSpan, attributes
from waiting import wait_until

from lunettes import __version__
from lunettes.config.errors import ConfigError, Section
from lunettes.model.ids import span_id, trace_id
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.registry import SINKS, BuildContext, load
from lunettes.sinks.base import Sink, SinkClosedError
from lunettes.sinks.otlp import OTLPSink

UID = "2f1c7a0e-8b5d-4c8e-9b1a-0d3e5f6a7b8c"
T0 = 1_700_000_000_000_000  # microseconds
PROTOCOLS = ["grpc", "http/protobuf"]


def make_record(uid: str = UID, name: str = "web-7d9f-abc", **overrides: Any) -> PodRecord:
    stages = [
        Stage("delivery", "platform", T0, T0 + 5_000_000),
        Stage("scheduling", "platform", T0 + 100, T0 + 1_000_000, parent="delivery"),
        Stage(
            "image_pull", "user", T0 + 1_000_000, T0 + 3_000_000,
            instance="nginx:1.25", instance_kind="image", parent="delivery",
            events=[SpanEvent(T0 + 1_500_000, "BackOff", "Back-off pulling image",
                              {"reason": "BackOff"})],
        ),
        Stage(
            "container_start", "user", T0 + 3_000_000, None,
            instance="web", instance_kind="container", parent="delivery",
        ),
    ]
    fields: dict[str, Any] = dict(
        uid=uid, namespace="shop", name=name, node="node-1",
        created_us=T0, finished_us=T0 + 5_000_000, outcome="delivered",
        owner_kind="ReplicaSet", owner_name="web-7d9f", last_seen_us=T0 + 6_000_000,
        stages=stages,
    )
    fields.update(overrides)
    return PodRecord(**fields)


@pytest.fixture(autouse=True)
def _spool_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sinks built without a spool_dir spool under the test's own directory."""
    monkeypatch.chdir(tmp_path)


def endpoint_of(receiver: OTLPReceiver, protocol: str) -> str:
    return receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint


def make_sink(receiver: OTLPReceiver, protocol: str, **kwargs: Any) -> OTLPSink:
    kwargs.setdefault("backoff_base_s", 0.01)
    return OTLPSink(endpoint=endpoint_of(receiver, protocol), protocol=protocol, **kwargs)


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


def from_config(data: dict[str, Any], env: dict[str, str] | None = None) -> tuple[OTLPSink,
                                                                                   list[str]]:
    problems: list[str] = []
    section = Section(data, "sinks.otlp", problems)
    sink = OTLPSink.from_config("otlp", section, BuildContext(config_dir=Path("."), env=env or {}))
    return sink, problems


def dead_endpoint() -> str:
    """An http:// endpoint on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- mapping, over the wire --------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_arrive_with_ids_links_times_and_attributes(otlp_receiver, protocol):
    with make_sink(otlp_receiver, protocol) as sink:
        sink.export([make_record()])
        spans = otlp_receiver.wait_for_spans(4)
    assert {s.protocol for s in spans} == {"grpc" if protocol == "grpc" else "http"}
    assert len(spans) == 4
    assert sink.stats["exported_spans"] == 4 and sink.stats["refused_spans"] == 0
    assert sink.stats["requests"] == 1

    tid = uuid.UUID(UID).bytes
    assert all(s.span.trace_id == tid == trace_id(UID) for s in spans)
    named = by_name(spans)
    assert set(named) == {"delivery", "scheduling", "image_pull nginx:1.25", "container_start web"}

    root = named["delivery"]
    assert root.span.parent_span_id == b""
    assert root.span.span_id == span_id(UID, "delivery", "")
    for child_name in ("scheduling", "image_pull nginx:1.25", "container_start web"):
        child = named[child_name].span
        assert child.parent_span_id == root.span.span_id
        assert child.kind == Span.SPAN_KIND_INTERNAL
    assert named["image_pull nginx:1.25"].span.span_id == span_id(UID, "image_pull", "nginx:1.25")
    assert len({s.span.span_id for s in spans}) == 4

    # Nanoseconds from microseconds.
    assert root.span.start_time_unix_nano == T0 * 1000
    assert root.span.end_time_unix_nano == (T0 + 5_000_000) * 1000
    sched = named["scheduling"].span
    assert (sched.start_time_unix_nano, sched.end_time_unix_nano) == (
        (T0 + 100) * 1000, (T0 + 1_000_000) * 1000)

    # Open stage: ends at the pod's finish, flagged open.
    start = named["container_start web"]
    assert start.span.end_time_unix_nano == (T0 + 5_000_000) * 1000
    assert start.attributes["lunettes.stage.open"] is True
    assert "lunettes.stage.open" not in named["scheduling"].attributes

    # Resource and scope.
    assert root.resource == {
        "service.name": "lunettes",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "web-7d9f-abc",
        "k8s.pod.uid": UID,
        "k8s.node.name": "node-1",
    }
    assert (root.scope_name, root.scope_version) == ("lunettes", __version__)

    # Span attributes.
    attrs = named["image_pull nginx:1.25"].attributes
    assert attrs["k8s.pod.uid"] == UID
    assert attrs["k8s.pod.name"] == "web-7d9f-abc"
    assert attrs["k8s.namespace.name"] == "shop"
    assert attrs["k8s.node.name"] == "node-1"
    assert attrs["lunettes.stage.owner"] == "user"
    assert attrs["lunettes.stage.name"] == "image_pull"
    assert attrs["container.image.name"] == "nginx:1.25"
    assert start.attributes["k8s.container.name"] == "web"
    assert "k8s.container.name" not in attrs
    assert named["scheduling"].attributes["lunettes.stage.owner"] == "platform"

    root_attrs = root.attributes
    assert root_attrs["lunettes.pod.outcome"] == "delivered"
    assert root_attrs["lunettes.pod.partial"] is False
    assert root_attrs["k8s.replicaset.name"] == "web-7d9f"
    assert "lunettes.pod.outcome" not in attrs
    assert root.span.status.code == Status.STATUS_CODE_UNSET

    # Events.
    (event,) = named["image_pull nginx:1.25"].span.events
    assert event.name == "BackOff"
    assert event.time_unix_nano == (T0 + 1_500_000) * 1000
    assert attributes(event.attributes) == {"reason": "BackOff",
                                            "message": "Back-off pulling image"}


def test_replaying_a_record_gives_identical_ids(otlp_receiver):
    with make_sink(otlp_receiver, "grpc") as sink:
        sink.export([make_record()])
        sink.export([make_record()])
        spans = otlp_receiver.wait_for_spans(8)
    first = sorted((s.span.trace_id, s.span.span_id, s.span.parent_span_id) for s in spans[:4])
    second = sorted((s.span.trace_id, s.span.span_id, s.span.parent_span_id) for s in spans[4:])
    assert first == second
    assert [s.span.SerializeToString(deterministic=True) for s in spans[:4]] == [
        s.span.SerializeToString(deterministic=True) for s in spans[4:]
    ]


def test_open_stage_falls_back_to_last_seen_then_start(otlp_receiver):
    last_seen = make_record(uid=str(uuid.uuid4()), finished_us=None, outcome="in_progress")
    nothing = make_record(uid=str(uuid.uuid4()), finished_us=None, last_seen_us=None,
                          outcome="in_progress")
    with make_sink(otlp_receiver, "grpc") as sink:
        sink.export([last_seen, nothing])
        spans = otlp_receiver.wait_for_spans(8)
    by_trace = {
        (s.span.trace_id, s.name): s.span for s in spans
    }
    open1 = by_trace[(trace_id(last_seen.uid), "container_start web")]
    assert open1.end_time_unix_nano == (T0 + 6_000_000) * 1000
    open2 = by_trace[(trace_id(nothing.uid), "container_start web")]
    assert open2.end_time_unix_nano == open2.start_time_unix_nano == (T0 + 3_000_000) * 1000


@pytest.mark.parametrize("outcome", ["failed", "rejected", "timeout", "deleted"])
def test_error_outcomes_mark_the_root_span(otlp_receiver, outcome):
    with make_sink(otlp_receiver, "grpc") as sink:
        sink.export([make_record(outcome=outcome, partial=True)])
        named = by_name(otlp_receiver.wait_for_spans(4))
    root = named["delivery"]
    assert root.span.status.code == Status.STATUS_CODE_ERROR
    assert root.span.status.message
    assert root.attributes["lunettes.pod.outcome"] == outcome
    assert root.attributes["lunettes.pod.partial"] is True
    assert named["scheduling"].span.status.code == Status.STATUS_CODE_UNSET


def test_owner_kind_without_semantic_convention(otlp_receiver):
    record = make_record(owner_kind="Workflow", owner_name="etl-1")
    with make_sink(otlp_receiver, "grpc") as sink:
        sink.export([record])
        root = by_name(otlp_receiver.wait_for_spans(4))["delivery"]
    assert root.attributes["lunettes.owner.kind"] == "Workflow"
    assert root.attributes["lunettes.owner.name"] == "etl-1"
    assert not any(k.startswith("k8s.") and k.endswith("set.name") for k in root.attributes)


def test_records_without_stages_get_a_root_or_are_skipped(otlp_receiver):
    bare = make_record(uid="not-a-uuid", stages=[], node="", finished_us=None,
                       outcome="rejected", owner_kind="", owner_name="")
    empty = make_record(uid=str(uuid.uuid4()), stages=[], created_us=None, finished_us=None,
                        last_seen_us=None)
    with make_sink(otlp_receiver, "http/protobuf") as sink:
        sink.export([bare, empty])
        (root,) = otlp_receiver.wait_for_spans(1)
    assert sink.stats["skipped_records"] == 1
    assert sink.stats["exported_spans"] == 1
    assert root.name == "delivery"
    assert root.span.trace_id == trace_id("not-a-uuid")
    assert root.span.start_time_unix_nano == T0 * 1000
    assert root.span.end_time_unix_nano == (T0 + 6_000_000) * 1000
    assert root.span.status.code == Status.STATUS_CODE_ERROR
    assert "k8s.node.name" not in root.resource
    assert "k8s.node.name" not in root.attributes


def test_stage_with_missing_parent_hangs_under_the_root(otlp_receiver):
    record = make_record()
    record.stages.append(Stage("orphan", "platform", T0, T0 + 10, parent="no-such-stage"))
    with make_sink(otlp_receiver, "grpc") as sink:
        sink.export([record])
        named = by_name(otlp_receiver.wait_for_spans(5))
    assert named["orphan"].span.parent_span_id == named["delivery"].span.span_id


def test_batch_size_is_pods_per_request(otlp_receiver):
    records = [make_record(uid=str(uuid.uuid4()), name=f"pod-{i}") for i in range(5)]
    with make_sink(otlp_receiver, "http/protobuf", batch_size=2) as sink:
        sink.export(records)
        otlp_receiver.wait_for_spans(20)
    assert [len(r.request.resource_spans) for r in otlp_receiver.requests] == [2, 2, 1]
    assert sink.stats["requests"] == 3
    pods = [
        attributes(rs.resource.attributes)["k8s.pod.name"]
        for r in otlp_receiver.requests
        for rs in r.request.resource_spans
    ]
    assert pods == [f"pod-{i}" for i in range(5)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_headers_are_sent(otlp_receiver, protocol):
    sink, problems = from_config(
        {"endpoint": endpoint_of(otlp_receiver, protocol), "protocol": protocol,
         "headers": {"X-Tenant": "team-a"}},
        env={"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-tenant=ignored"},
    )
    assert problems == []
    with sink:
        sink.export([make_record()])
        otlp_receiver.wait_for_spans(4)
    headers = otlp_receiver.requests[0].headers
    assert headers["x-tenant"] == "team-a"
    assert headers["authorization"] == "Bearer abc"
    if protocol == "http/protobuf":
        assert headers["content-type"] == "application/x-protobuf"
        assert otlp_receiver.requests[0].path == "/v1/traces"


def test_partial_success_counts_rejected_spans(otlp_receiver, caplog):
    otlp_receiver.reject_next(1)
    with make_sink(otlp_receiver, "grpc") as sink, caplog.at_level(logging.WARNING):
        sink.export([make_record()])
    assert sink.stats["rejected_spans"] == 1
    assert sink.stats["refused_spans"] == 1
    assert sink.stats["exported_spans"] == 3
    assert sink.lost == 1
    assert "rejected 1 of 4 spans" in caplog.text


def test_sink_satisfies_the_contract_and_is_registered():
    sink = OTLPSink(protocol="http/protobuf")
    try:
        assert isinstance(sink, Sink)
    finally:
        sink.shutdown()
    assert load(SINKS, "otlp") is OTLPSink


# -- endpoint resolution ----------------------------------------------------------------


def test_default_endpoints_per_protocol():
    grpc_sink, problems = from_config({})
    http_sink, problems2 = from_config({"protocol": "http/protobuf"})
    assert problems == problems2 == []
    assert grpc_sink.protocol == "grpc"
    assert grpc_sink.endpoint == "localhost:4317"
    assert grpc_sink.insecure is True
    assert http_sink.endpoint == "http://localhost:4318/v1/traces"
    for sink in (grpc_sink, http_sink):
        sink.shutdown()


def test_generic_env_endpoint_gets_the_traces_path(otlp_receiver):
    sink, problems = from_config(
        {}, env={"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint + "/",
                 "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    )
    assert problems == []
    assert sink.protocol == "http/protobuf"
    assert sink.endpoint == otlp_receiver.http_endpoint + "/v1/traces"
    with sink:
        sink.export([make_record()])
        otlp_receiver.wait_for_spans(4)


def test_traces_env_endpoint_is_used_as_is_and_wins(otlp_receiver):
    sink, problems = from_config(
        {"protocol": "http/protobuf"},
        env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": otlp_receiver.http_endpoint + "/v1/traces",
             "OTEL_EXPORTER_OTLP_ENDPOINT": "http://elsewhere.invalid:4318"},
    )
    assert problems == []
    assert sink.endpoint == otlp_receiver.http_endpoint + "/v1/traces"
    with sink:
        sink.export([make_record()])
        otlp_receiver.wait_for_spans(4)

    custom, _ = from_config(
        {"protocol": "http/protobuf"},
        env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:9999/custom/path"},
    )
    assert custom.endpoint == "http://collector:9999/custom/path"
    custom.shutdown()


def test_grpc_env_endpoint_and_config_precedence(otlp_receiver):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.grpc_endpoint,
           "OTEL_EXPORTER_OTLP_TIMEOUT": "2500"}
    sink, problems = from_config({}, env=env)
    assert problems == []
    assert sink.endpoint == f"127.0.0.1:{otlp_receiver.grpc_port}"
    assert sink.timeout_s == 2.5
    with sink:
        sink.export([make_record()])
        assert otlp_receiver.wait_for_spans(4)[0].protocol == "grpc"

    # An explicit endpoint in the config beats the environment.
    configured, _ = from_config({"endpoint": "http://collector:4317"}, env=env)
    assert configured.endpoint == "collector:4317"
    configured.shutdown()


def test_https_endpoint_is_secure_by_default():
    sink, problems = from_config({"endpoint": "https://collector.example:4317"})
    assert problems == []
    assert sink.insecure is False
    sink.shutdown()


# -- retries and failures ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retries_after_injected_failures(otlp_receiver, protocol):
    otlp_receiver.fail_next(2)
    with make_sink(otlp_receiver, protocol, timeout_s=5) as sink:
        sink.export([make_record()])
        assert sink.force_flush() is True
    assert otlp_receiver.attempts == 3
    assert sink.stats == {
        "exported_spans": 4, "refused_spans": 0, "rejected_spans": 0, "spooled_spans": 0,
        "drained_spans": 0, "dropped_spans": 0, "requests": 3, "retries": 2,
        "skipped_records": 0,
    }
    assert sink.lost == 0


@pytest.mark.parametrize(
    ("protocol", "code", "status"),
    [
        ("grpc", grpc.StatusCode.RESOURCE_EXHAUSTED, 0),
        ("grpc", grpc.StatusCode.DEADLINE_EXCEEDED, 0),
        ("grpc", grpc.StatusCode.INTERNAL, 0),
        ("http/protobuf", None, 429),
        ("http/protobuf", None, 500),
        ("http/protobuf", None, 502),
        ("http/protobuf", None, 504),
    ],
)
def test_every_retryable_status_is_retried(otlp_receiver, protocol, code, status):
    if code is not None:
        otlp_receiver.fail_next(1, grpc_code=code)
    else:
        otlp_receiver.fail_next(1, http_status=status)
    with make_sink(otlp_receiver, protocol) as sink:
        sink.export([make_record()])
        assert sink.force_flush() is True
    assert sink.stats["retries"] == 1
    assert sink.stats["exported_spans"] == 4


def test_http_retry_after_is_honoured(otlp_receiver):
    otlp_receiver.fail_next(1, http_status=429, retry_after="1")
    with make_sink(otlp_receiver, "http/protobuf", timeout_s=5) as sink:
        began = time.monotonic()
        sink.export([make_record()])
        assert sink.force_flush() is True
        elapsed = time.monotonic() - began
    assert sink.stats["exported_spans"] == 4
    assert elapsed >= 1.0


@pytest.mark.parametrize(
    ("protocol", "code", "status"),
    [("grpc", grpc.StatusCode.INVALID_ARGUMENT, 0), ("http/protobuf", None, 400)],
)
def test_a_permanent_refusal_is_logged_counted_and_not_resent(otlp_receiver, protocol, code,
                                                              status, caplog):
    if code is not None:
        otlp_receiver.fail_next(1, grpc_code=code)
    else:
        otlp_receiver.fail_next(1, http_status=status)
    with make_sink(otlp_receiver, protocol) as sink, caplog.at_level(logging.ERROR):
        sink.export([make_record()])
        assert sink.force_flush() is True  # nothing left to deliver
    assert otlp_receiver.attempts == 1
    assert sink.stats["refused_spans"] == 4
    assert sink.stats["retries"] == 0 and sink.stats["spooled_spans"] == 0
    assert sink.lost == 1
    assert "refused 4 spans of 1 pods" in caplog.text and "not retried" in caplog.text


@pytest.mark.parametrize(("protocol", "code", "status"),
                         [("grpc", grpc.StatusCode.UNAUTHENTICATED, 0),
                          ("http/protobuf", None, 401)])
def test_refused_credentials_are_spooled_not_lost(otlp_receiver, protocol, code, status):
    if code is not None:
        otlp_receiver.fail_next(1, grpc_code=code)
    else:
        otlp_receiver.fail_next(1, http_status=status)
    with make_sink(otlp_receiver, protocol) as sink:
        sink.export([make_record()])
        wait_until(lambda: sink.stats["drained_spans"] == 4)
    assert otlp_receiver.attempts == 2
    assert sink.stats["spooled_spans"] == 4 and sink.stats["retries"] == 0
    assert sink.lost == 0
    assert len(otlp_receiver.spans) == 4


def test_max_retries_bounds_one_send_then_the_spool_takes_it(otlp_receiver):
    otlp_receiver.fail_next(3)
    with make_sink(otlp_receiver, "grpc", max_retries=2) as sink:
        sink.export([make_record()])
        wait_until(lambda: sink.stats["drained_spans"] == 4)
    assert otlp_receiver.attempts == 4  # 1 + 2 retries, then the probe from the spool
    assert sink.stats["retries"] == 2 and sink.stats["spooled_spans"] == 4
    assert list(otlp_receiver.spans_per_trace().values()) == [4]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_dead_endpoint_costs_the_caller_nothing_and_loses_nothing(protocol, tmp_path, caplog):
    sink = OTLPSink(endpoint=dead_endpoint(), protocol=protocol, timeout_s=1.0,
                    max_retries=1000, backoff_base_s=0.05, backoff_max_s=0.2,
                    spool_dir=tmp_path / "spool")
    with sink, caplog.at_level(logging.ERROR):
        began = time.monotonic()
        sink.export([make_record(), make_record(uid=str(uuid.uuid4()))])
        exported = time.monotonic() - began
        assert sink.force_flush(10) is False
        flushed = time.monotonic() - began
    assert exported < 0.5
    assert flushed < 2.5  # the send's timeout_s, then the spool
    assert sink.stats["spooled_spans"] == 8 and sink.stats["exported_spans"] == 0
    assert sink.stats["retries"] >= 1
    assert sink.lost == 0
    assert sink.spool.pending() == 8
    assert "cannot take data" in caplog.text


# -- lifecycle -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_twice_then_export_raises(otlp_receiver, protocol):
    sink = make_sink(otlp_receiver, protocol)
    sink.export([make_record()])
    assert sink.force_flush(timeout_s=1) is True
    sink.shutdown()
    sink.shutdown()
    with pytest.raises(SinkClosedError):
        sink.export([make_record()])


# -- configuration errors ---------------------------------------------------------------


def test_unknown_key_suggests_the_right_one():
    sink, problems = from_config({"endpoit": "http://collector:4317"})
    sink.shutdown()
    assert problems == ["sinks.otlp.endpoit: unknown key (did you mean endpoint?)"]
    assert "did you mean endpoint?" in str(ConfigError(problems))


def test_bad_protocol_lists_the_supported_ones():
    sink, problems = from_config({"protocol": "http/json"})
    sink.shutdown()
    assert len(problems) == 1
    assert problems[0].startswith("sinks.otlp.protocol: unsupported protocol 'http/json'")
    assert "supported: grpc, http/protobuf" in problems[0]


def test_bad_protocol_from_the_environment_names_the_variable():
    sink, problems = from_config({}, env={"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
    sink.shutdown()
    assert len(problems) == 1
    assert "(from OTEL_EXPORTER_OTLP_PROTOCOL)" in problems[0]
    assert "supported: grpc, http/protobuf" in problems[0]


def test_wrong_types_and_ranges_are_problems():
    sink, problems = from_config(
        {"batch_size": 0, "timeout_s": "10s", "max_retries": -1, "insecure": "yes",
         "headers": {"a": ["list"]}, "endpoint": "ftp://collector"}
    )
    sink.shutdown()
    joined = "\n".join(problems)
    assert "sinks.otlp.batch_size: must be at least 1" in joined
    assert "sinks.otlp.timeout_s: expected int or float" in joined
    assert "sinks.otlp.max_retries: must not be negative" in joined
    assert "sinks.otlp.insecure: expected bool" in joined
    assert "sinks.otlp.headers.a: expected a string" in joined
    assert "sinks.otlp.endpoint: unsupported scheme 'ftp'" in joined
    assert len(problems) == 6


def test_constructor_rejects_bad_values():
    with pytest.raises(ValueError, match="supported: grpc, http/protobuf"):
        OTLPSink(protocol="thrift")
    with pytest.raises(ValueError, match="batch_size"):
        OTLPSink(batch_size=0)


# -- outages: the fault matrix ----------------------------------------------------------

FAULTS = ["down", "hang", 429, 503, 500]


def records_named(prefix: str, n: int) -> list[PodRecord]:
    return [make_record(uid=str(uuid.uuid4()), name=f"{prefix}-{i}") for i in range(n)]


def start_fault(receiver: OTLPReceiver, fault: str | int) -> None:
    if fault == "down":
        receiver.go_down()
    else:
        receiver.fail(fault)


def end_fault(receiver: OTLPReceiver, fault: str | int) -> None:
    if fault == "down":
        receiver.come_back()
    else:
        receiver.recover()


def outage_sink(receiver: OTLPReceiver, protocol: str, spool: Path, **kwargs: Any) -> OTLPSink:
    kwargs.setdefault("timeout_s", 1.0)
    kwargs.setdefault("backoff_max_s", 0.2)
    return make_sink(receiver, protocol, batch_size=5, spool_dir=spool, **kwargs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", FAULTS)
def test_an_outage_then_recovery_delivers_every_span_exactly_once(otlp_receiver, protocol,
                                                                  fault, tmp_path):
    before, during, after = (records_named(p, 10) for p in ("before", "during", "after"))
    sink = outage_sink(otlp_receiver, protocol, tmp_path / "spool")
    sink.export(before)
    assert sink.force_flush(10) is True

    start_fault(otlp_receiver, fault)
    began = time.monotonic()
    for record in during:  # one request per pod: more than the queue holds
        sink.export([record])
    assert time.monotonic() - began < 0.5  # export never waits on the collector
    wait_until(lambda: sink.spool.pending() > 0)
    assert sink.force_flush(10) is False

    end_fault(otlp_receiver, fault)
    sink.export(after)
    # The probes of the spool find the collector back (a flush right at the recovery may
    # still meet gRPC's own reconnect backoff and say False: the spans wait spooled).
    wait_until(lambda: sink.pending() == 0)
    assert sink.force_flush(30) is True
    sink.shutdown()

    expected = {trace_id(r.uid): 4 for r in before + during + after}
    assert otlp_receiver.spans_per_trace() == expected  # each span once, none missing
    assert sink.lost == 0 and sink.stats["dropped_spans"] == 0
    assert sink.stats["drained_spans"] == sink.stats["spooled_spans"] > 0
    assert sink.spool.pending() == 0 and not list((tmp_path / "spool").iterdir())


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault", FAULTS)
def test_what_a_run_left_spooled_the_next_run_sends_once(otlp_receiver, protocol, fault,
                                                         tmp_path):
    spool = tmp_path / "spool"
    records = records_named("pod", 12)
    start_fault(otlp_receiver, fault)
    # No probe for a minute: a request on the wire at the shutdown could still be taken
    # after the recovery (the answer never read: the one case sent twice).
    first = outage_sink(otlp_receiver, protocol, spool, backoff_base_s=60, backoff_max_s=60)
    began = time.monotonic()
    first.export(records)
    if fault == "hang":  # shut down with a request on the wire: it is spooled too
        otlp_receiver.wait_for_hung(1)
    else:
        wait_until(lambda: first.spool.pending_pods() == 12)
    first.shutdown()
    assert time.monotonic() - began < 5.0
    assert first.spool.pending_pods() == 12 and first.lost == 0
    assert sorted(p.suffix for p in spool.iterdir()) == [".otlp"] * 3
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in spool.iterdir())

    end_fault(otlp_receiver, fault)
    second = outage_sink(otlp_receiver, protocol, spool)
    assert second.force_flush(30) is True
    second.shutdown()
    assert otlp_receiver.spans_per_trace() == {trace_id(r.uid): 4 for r in records}
    assert second.stats["drained_spans"] == 48 and second.stats["exported_spans"] == 48


def test_a_full_spool_drops_the_oldest_and_counts_them_lost(otlp_receiver, tmp_path, caplog):
    otlp_receiver.go_down()
    records = records_named("pod", 20)
    # No probe while spooling: a file being sent is never dropped, which would make the
    # dropped ones depend on timing.
    sink = outage_sink(otlp_receiver, "grpc", tmp_path / "spool", spool_max_mb=0.004,
                       backoff_base_s=600.0, backoff_max_s=600.0)
    with caplog.at_level(logging.ERROR, "lunettes.sinks.spool"):
        for record in records:
            sink.export([record])
        sink.shutdown()
    assert "over its limit" in caplog.text
    lost = sink.lost
    assert lost > 0 and sink.stats["dropped_spans"] == 4 * lost
    assert sink.spool.size() <= 0.004 * 2**20
    otlp_receiver.come_back()
    again = outage_sink(otlp_receiver, "grpc", tmp_path / "spool")
    assert again.force_flush(30) is True
    again.shutdown()
    # What survived is the newest, each exactly once.
    assert otlp_receiver.spans_per_trace() == {trace_id(r.uid): 4 for r in records[lost:]}
