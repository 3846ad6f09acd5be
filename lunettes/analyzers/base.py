"""The analyzer contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Analyzer(Protocol):
    """A named unit of analysis in the pipeline DAG.

    ``analyze(timeline, inputs)`` reads one final PodTimeline and the outputs of the
    analyzers it ``needs`` (``inputs`` maps their names to their outputs) and returns its
    own output. It keeps no state between Pods. Factories are
    ``from_config(name, section, context)`` classmethods that own their defaults.
    """

    name: str

    def analyze(self, timeline: Any, inputs: Mapping[str, Any]) -> Any: ...
