"""Traces that connect, seen at a real OTLP receiver after ``lunettes replay``:

- a Pod whose create carried a W3C trace context annotation has a root span linked to the
  caller's span (the annotation is put into the bundled sample's log by this test);
- span events carry the audit IDs of the log's own records (read here with plain json),
  under kube-apiserver's attribute name ``audit-id``;
- root spans carry the SLO result and the diagnosis, so Jaeger finds Pods by tag; a Pod
  that failed in a stage has that stage's span in error.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("grpc", reason="needs the otlp extra")

from api_server import SAMPLE
from otlp_receiver import OTLPReceiver, attributes

CALLER_TRACE, CALLER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def annotate_first_create(lines: list[bytes]) -> tuple[str, str]:
    """Put the caller's traceparent on the first Pod create of ``lines`` (in place);
    return the Pod's namespace and name."""
    for i, line in enumerate(lines):
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (event.get("verb") == "create" and ref.get("resource") == "pods"
                and not ref.get("subresource") and event.get("responseObject")):
            for body in ("requestObject", "responseObject"):
                meta = event[body].setdefault("metadata", {})
                meta.setdefault("annotations", {})["lunettes.io/traceparent"] = (
                    f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
            lines[i] = json.dumps(event).encode()
            return ref["namespace"], event["responseObject"]["metadata"]["name"]
    raise AssertionError("no Pod create with a response body in the sample")


@pytest.fixture(scope="module")
def received(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("connect")
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines()
    namespace, name = annotate_first_create(lines)
    log = tmp / "audit.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    receiver = OTLPReceiver().start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lunettes.cli.main", "replay", str(log), "--no-store",
             "--format", "none", "--otlp-endpoint", receiver.grpc_endpoint],
            capture_output=True, text=True, timeout=300, cwd=tmp, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        spans = list(receiver.spans)
    finally:
        receiver.stop()
    audit_ids = {json.loads(line)["auditID"] for line in lines}
    return {"spans": spans, "namespace": namespace, "name": name, "audit_ids": audit_ids}


def test_the_annotated_pods_root_span_links_to_the_callers_span(received: dict) -> None:
    roots = [s for s in received["spans"] if not s.span.parent_span_id
             and s.resource.get("k8s.pod.name") == received["name"]
             and s.resource.get("k8s.namespace.name") == received["namespace"]]
    assert len(roots) == 1
    (link,) = roots[0].span.links
    assert (link.trace_id.hex(), link.span_id.hex()) == (CALLER_TRACE, CALLER_SPAN)
    others = [s for s in received["spans"] if s.span.links and s is not roots[0]]
    assert others == []  # no other Pod carried a trace context


def test_span_events_carry_the_audit_ids_of_the_logs_records(received: dict) -> None:
    found = [attributes(e.attributes).get("audit-id") for s in received["spans"]
             for e in s.span.events]
    assert len(found) > 50 and all(found), "every span event names its audit record"
    assert set(found) <= received["audit_ids"]


def test_roots_carry_slo_and_diagnosis_and_failed_stages_are_errors(received: dict) -> None:
    roots = [s for s in received["spans"] if not s.span.parent_span_id]
    assert len(roots) > 250
    results = {s.attributes.get("lunettes.slo.result") for s in roots}
    assert {"met", "violated"} <= results
    reasons = {s.attributes.get("lunettes.diagnosis.reason") for s in roots} - {None}
    assert len(reasons) > 10
    failed_stages = [s for s in received["spans"] if s.span.parent_span_id
                     and s.span.status.code == s.span.status.STATUS_CODE_ERROR]
    assert failed_stages
    for span in failed_stages:
        assert any(attributes(e.attributes).get("lunettes.evidence") for e in span.span.events)
