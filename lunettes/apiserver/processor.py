"""Processor ``requests``: the API server load analysis inside the pipeline's stream.

First in the ``processors:`` list (``lunettes replay/serve --apiserver-load`` puts it
there): it asks the sources for their lines (``keep_lines``), counts each line's request
in a :class:`~lunettes.apiserver.stream.RequestStream` and passes the record on
unchanged, without its line. Settings: ``interval_s`` (60), ``top_k`` values per
dimension and interval (25), ``max_label_values`` per Prometheus label (50).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord
from lunettes.processors.base import DEFAULT_PROCESSORS, Run, Stateless
from lunettes.registry import BuildContext

if TYPE_CHECKING:
    from lunettes.apiserver.stream import RequestStream

__all__ = ["Requests", "requested", "with_requests", "without_requests"]

TYPE = "requests"


class Requests(Stateless):
    """See the module docstring; :attr:`stream` holds the counts."""

    def __init__(self, interval_s: int = 60, top_k: int = 25, max_values: int = 50,
                 name: str = TYPE) -> None:
        from lunettes.apiserver.stream import RequestStream  # only when asked for

        self.name = name
        self.stream: RequestStream = RequestStream(interval_s, top_k, max_values)

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Requests:
        values = {}
        for setting, default in (("interval_s", 60), ("top_k", 25), ("max_label_values", 50)):
            value = section.get(setting, default, int)
            if value < 1:
                section.problem(setting, "must be at least 1")
            values[setting] = max(1, value)
        section.check_unknown()
        return cls(values["interval_s"], values["top_k"], values["max_label_values"], key)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        for source in run.sources:
            if hasattr(source, "keep_lines"):
                source.keep_lines = True
            if hasattr(source, "line_reader"):  # one decode of each line for both
                source.line_reader = self.stream.peek_line
        yield from self.stream.process(items)
        if run.ending:
            with self.stream.lock:
                self.stream.finish()


def _is_requests(item: Any) -> bool:
    key = item if isinstance(item, str) else (
        next(iter(item), "") if isinstance(item, Mapping) and len(item) == 1 else "")
    return str(key).split("/")[0] == TYPE


def requested(data: Mapping[str, Any]) -> bool:
    """True when pipeline.yaml's data lists a ``requests`` processor."""
    items = data.get("processors")
    return isinstance(items, list) and any(_is_requests(item) for item in items)


def with_requests(data: Mapping[str, Any]) -> dict[str, Any]:
    """pipeline.yaml's data with a ``requests`` processor first in its ``processors`` list
    (the default chain when it has none), unless it lists one already."""
    out = dict(data)
    items = out.get("processors")
    if not isinstance(items, list):
        items = list(DEFAULT_PROCESSORS)
    if not any(_is_requests(item) for item in items):
        items = [TYPE, *items]
    out["processors"] = items
    return out


def without_requests(data: Mapping[str, Any]) -> dict[str, Any]:
    """pipeline.yaml's data without its ``requests`` processors (``replay --workers``: the
    parent counts the requests, the workers do not)."""
    out = dict(data)
    items = out.get("processors")
    if isinstance(items, list):
        out["processors"] = [item for item in items if not _is_requests(item)]
    return out
