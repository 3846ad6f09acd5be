"""FollowSource: audit records from JSON-lines files as they grow (``tail -f``).

For ``lunettes serve --follow``. Each file is read to its end, then polled for new lines
until ``stop`` is set; a line is decoded only once its newline arrived. A file that shrinks
(truncated in place) is read again from its start. Rotation (a new file under the same
name) is not followed: pipe ``tail -F`` into ``lunettes serve -`` for that.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import orjson

from lunettes.model.audit import AuditRecord, skipped
from lunettes.sources.decode import decode_document
from lunettes.sources.errors import BadRecord, BadRecords
from lunettes.sources.peek import clock_only, peek

__all__ = ["FollowSource"]


@dataclass
class _Tail:
    path: str
    stream: IO[bytes]
    number: int = 0
    partial: bytes = b""


class FollowSource:
    """Yields AuditRecords from ``paths`` (plain files) as lines are appended, until
    ``stop`` is set. ``on_caught_up`` is called once, the first time every file has been
    read to its end. Bad lines are counted in ``bad``, and records that cannot be about a
    Pod are left undecoded, as :class:`FileSource` does."""

    def __init__(self, paths: Iterable[str], stop: threading.Event, *, poll_s: float = 0.2,
                 bad: BadRecords | None = None,
                 on_caught_up: Callable[[], None] | None = None) -> None:
        self.paths = list(paths)
        for path in self.paths:
            if path == "-" or path.endswith(".gz") or os.path.isdir(path):
                raise ValueError(f"{path}: --follow reads plain files only (not stdin, .gz "
                                 f"or directories)")
        self.stop = stop
        self.poll_s = poll_s
        self.bad = bad if bad is not None else BadRecords()
        self.on_caught_up = on_caught_up

    def __iter__(self) -> Iterator[AuditRecord]:
        tails = [_Tail(path, open(path, "rb")) for path in self.paths]  # noqa: SIM115
        caught_up = False
        try:
            while not self.stop.is_set():
                progressed = False
                for tail in tails:
                    for raw in self._read(tail):
                        progressed = True
                        yield from self._decode(raw, f"{tail.path}:{tail.number}")
                if not progressed:
                    if not caught_up and self.on_caught_up is not None:
                        self.on_caught_up()
                    caught_up = True
                    self.stop.wait(self.poll_s)
        finally:
            for tail in tails:
                tail.stream.close()

    def _read(self, tail: _Tail) -> Iterator[bytes]:
        stream = tail.stream
        if os.fstat(stream.fileno()).st_size < stream.tell():
            stream.seek(0)
            tail.number, tail.partial = 0, b""
        while True:
            line = stream.readline()
            if not line:
                return
            if not line.endswith(b"\n"):
                tail.partial += line
                return
            line, tail.partial = tail.partial + line, b""
            tail.number += 1
            yield line

    def _decode(self, raw: bytes, origin: str) -> Iterator[AuditRecord]:
        if not raw.strip():
            return
        seen = peek(raw)
        received = None if seen is None else clock_only(raw, seen)
        if received is not None:  # nothing about a Pod (see FileSource)
            yield skipped(received)
            return
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.bad.add("invalid_json", origin, str(exc))
            return
        for item in decode_document(doc, origin):
            if isinstance(item, BadRecord):
                self.bad.add(item.reason, origin, str(item))
            else:
                yield item
