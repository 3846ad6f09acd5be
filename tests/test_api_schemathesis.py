"""Schemathesis against the live OpenAPI spec of ``lunettes serve``: generated requests
for every operation, on a real server over a store filled by a replay of the sample, with
no server error, status codes and content types the spec declares, and answers that match
their schemas. Bounded: a few examples per operation, well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("schemathesis", reason="needs the test extra")
import schemathesis
from api_server import SAMPLE, serve
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def live_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    with serve([str(SAMPLE), "--store", str(tmp / "store.db"), "--jaeger-url",
                "http://jaeger.test:16686"], tmp) as base:
        spec = schemathesis.openapi.from_url(f"{base}/openapi.json")
        # /metrics answers the Prometheus text format, which the spec cannot describe.
        yield spec.exclude(path="/metrics")


schema = schemathesis.pytest.from_fixture("live_spec")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_spec(case: Any) -> None:
    case.call_and_validate(checks=CHECKS)


def test_spec_has_every_operation(live_spec: Any) -> None:
    operations = [op.ok() for op in live_spec.get_all_operations()]
    assert len(operations) >= 13
