"""Shared test fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from ci_strict import pytest_make_collect_report, pytest_runtest_makereport
from hypothesis import settings

__all__ = ["pytest_make_collect_report", "pytest_runtest_makereport"]  # CI=true: skip = fail

# Property tests check properties, never time: a loaded machine must not fail them.
settings.register_profile("lunettes", deadline=None)
settings.load_profile("lunettes")

if TYPE_CHECKING:
    from otlp_receiver import OTLPReceiver


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """A real OTLP receiver (gRPC and HTTP on 127.0.0.1), stopped after the test."""
    pytest.importorskip("grpc", reason="needs the otlp extra")
    from otlp_receiver import OTLPReceiver

    receiver = OTLPReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
