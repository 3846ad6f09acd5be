"""The data lunettes passes between its parts: records, HyperEvents, timelines, pod records."""

from lunettes.model.audit import AuditRecord
from lunettes.model.hyperevent import ConditionChange, ContainerChange, HyperEvent
from lunettes.model.record import PodRecord, SpanEvent, Stage
from lunettes.model.spec import ContainerSpec, PodSpecSummary
from lunettes.model.timeline import PodTimeline
from lunettes.model.times import format_time, parse_time

__all__ = [
    "AuditRecord",
    "ConditionChange",
    "ContainerChange",
    "ContainerSpec",
    "HyperEvent",
    "PodRecord",
    "PodSpecSummary",
    "PodTimeline",
    "SpanEvent",
    "Stage",
    "format_time",
    "parse_time",
]
