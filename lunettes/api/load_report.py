"""The API server load analysis (``lunettes analyze apiserver``) that ``lunettes serve``
answers: of the requests its pipeline counts as it reads (``--apiserver-load``, whatever
the sources: files, followed logs, the webhook, JetStream), or else of the audit files it
was given. Computed on the first ask and kept; ``refresh`` computes it again (for files,
when one changed: size or modification time, as under ``--follow``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lunettes.model.times import format_time

if TYPE_CHECKING:
    from lunettes.apiserver.stream import RequestStream

__all__ = ["LoadReports", "StreamReports"]

Signature = tuple[tuple[str, int, int], ...]


class LoadReports:
    """One cached analysis of ``paths`` (files or directories of rotated logs)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = list(paths)
        self._lock = threading.Lock()
        self._analysis: Any = None
        self._signature: Signature | None = None
        self._computed_at = ""

    def signature(self) -> Signature:
        """(file, size, mtime) of every file under the paths."""
        found = []
        for path in map(Path, self.paths):
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                try:
                    stat = file.stat()
                except OSError:
                    continue
                if file.is_file():
                    found.append((str(file), stat.st_size, stat.st_mtime_ns))
        return tuple(found)

    def analysis(self, refresh: bool = False) -> tuple[Any, str]:
        """The analysis and when it was computed (one computation at a time)."""
        with self._lock:
            if self._analysis is None or refresh:
                signature = self.signature()
                if self._analysis is None or signature != self._signature:
                    from lunettes.apiserver.report import analyze_paths

                    self._analysis = analyze_paths(self.paths)
                    self._signature = signature
                    self._computed_at = format_time(time.time_ns() // 1000)
            return self._analysis, self._computed_at


class StreamReports:
    """One cached analysis of what ``stream`` (the pipeline's ``requests`` processor)
    counted, from a snapshot: the pipeline counts on meanwhile."""

    def __init__(self, stream: RequestStream) -> None:
        self.stream = stream
        self._lock = threading.Lock()
        self._analysis: Any = None
        self._computed_at = ""

    def analysis(self, refresh: bool = False) -> tuple[Any, str]:
        """The analysis and when it was computed (one computation at a time)."""
        with self._lock:
            if self._analysis is None or refresh:
                self._analysis = self.stream.snapshot().analysis()
                self._computed_at = format_time(time.time_ns() // 1000)
            return self._analysis, self._computed_at
