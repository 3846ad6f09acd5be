"""Sinks: where pod records go (embedded SQLite store, OTLP traces, JSON lines, memory)."""

from lunettes.sinks.base import Sink, SinkClosedError
from lunettes.sinks.memory import InMemorySink

__all__ = ["InMemorySink", "Sink", "SinkClosedError"]
