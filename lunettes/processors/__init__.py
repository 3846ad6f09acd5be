"""Processors between sources and analyzers: clock, dedupe, reorder window, fold into
timelines, built from the ``processors:`` section (see :mod:`lunettes.processors.base`)."""

from lunettes.processors.base import Processor, Run, build_processors
from lunettes.processors.dedupe import Deduplicator
from lunettes.processors.fold import Folder
from lunettes.processors.reorder import ReorderWindow

__all__ = ["Deduplicator", "Folder", "Processor", "ReorderWindow", "Run", "build_processors"]
