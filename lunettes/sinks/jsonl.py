"""JSONLSink: pod records as JSON lines, to a file or a stream."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO

import orjson

from lunettes.config.errors import Section
from lunettes.model.record import PodRecord
from lunettes.private_files import open_private
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError


class JSONLSink:
    """Writes one JSON object per pod record; ``-`` means standard output. A file is
    appended to, created 0600."""

    def __init__(self, path: str = "-", stream: IO[bytes] | None = None) -> None:
        self.path = path
        if stream is not None:
            self._stream: IO[bytes] | None = stream
            self._owned = False
        elif path == "-":
            self._stream, self._owned = sys.stdout.buffer, False
        else:
            self._stream, self._owned = open_private(path, "ab"), True

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext) -> JSONLSink:
        path = section.get("path", "-", str)
        section.check_unknown()
        return cls(path)

    def export(self, batch: Sequence[PodRecord]) -> None:
        if self._stream is None:
            raise SinkClosedError(f"jsonl sink {self.path} is shut down")
        self._stream.write(b"".join(
            orjson.dumps(r.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for r in batch))

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        if self._stream is not None:
            self._stream.flush()
        return True

    def shutdown(self) -> None:
        if self._stream is not None:
            self._stream.flush()
            if self._owned:
                self._stream.close()
            self._stream = None
