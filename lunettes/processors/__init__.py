"""Processors between sources and analyzers: dedupe, reorder window, fold into timelines."""

from lunettes.processors.dedupe import Deduplicator
from lunettes.processors.fold import Folder
from lunettes.processors.reorder import ReorderWindow

__all__ = ["Deduplicator", "Folder", "ReorderWindow"]
