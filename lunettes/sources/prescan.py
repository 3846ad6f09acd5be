"""The pre-scan of ``--workers N``: read every line once, route it to the worker that owns
it, so each worker decodes only its own lines.

The parent reads the files and tells each line's owner from its bytes
(:func:`~lunettes.sources.partition.route_line`, the routing of live partitions too).
Each worker receives, in the input's order, batches of items
(:class:`~lunettes.sources.files.FileSource` with a ``feed`` reads them):

- ``("f", name)``: the lines that follow are read from file ``name``;
- ``("o", number, line)``: a line it owns: it decodes it;
- ``("a", number, line)``: a line whose bytes do not tell its owner: every worker decodes
  it and keeps the records it owns (EventList batches, Cloud Logging entries, escapes);
- ``("s", number, time)``: a line about no Pod that it counts (its time moves the clock);
- an integer: the audit time of another worker's final record: a clock tick, so the
  reorder window and the Pod timeouts advance in every worker as in one process;
- ``("r", path)``: a file it reads itself, partitioned (YAML, a file that is one JSON
  document);
- ``("b", reason, where, detail, line)``: a bad line or file to count (worker 0 only).

A worker thus never reads, peeks at or decodes another worker's lines; what it still does
for them is move each final record's time through its reorder window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain
from typing import Any

from lunettes.sources.files import (
    _COMPRESSION_ERRORS,
    MAX_LINE_BYTES,
    _open,
    _skip_line,
    _whole_json,
    is_yaml,
)
from lunettes.sources.partition import ANY, CLOCK, route_line

__all__ = ["BATCH_LINES", "Prescan"]

BATCH_LINES = 2000
"""Lines read before each batch is handed to the workers."""


class Prescan:
    """Iterating it reads ``paths`` (files, not stdin) once and yields, for every
    :data:`BATCH_LINES` lines, one list of items per worker of ``count`` (see the module's
    docstring); ``on_bytes`` is told the bytes read from disk."""

    def __init__(self, paths: list[str], count: int, max_line_bytes: int = MAX_LINE_BYTES,
                 on_bytes: Callable[[int], None] | None = None,
                 on_line: Callable[[bytes, str], None] | None = None) -> None:
        self.paths, self.count, self.limit = paths, count, max_line_bytes
        self.on_bytes = on_bytes
        self.on_line = on_line
        """Told every JSON line routed, with its place (the API server load analysis of
        ``--workers``: the lines a single process would hand the ``requests``
        processor)."""
        self.lines = 0
        """Lines read so far (files a worker reads itself not counted)."""

    def __iter__(self) -> Iterator[list[list[Any]]]:
        count, limit, on_line = self.count, self.limit, self.on_line
        out: list[list[Any]] = [[] for _ in range(count)]
        for path in self.paths:
            number = 0
            if is_yaml(path):
                for items in out:
                    items.append(("r", path))
                continue
            try:
                with _open(path, self.on_bytes) as stream:
                    first = stream.readline(limit)
                    if first.lstrip()[:1] in (b"{", b"[") and not _whole_json(first):
                        for items in out:  # one JSON document, maybe: read it whole
                            items.append(("r", path))
                        continue
                    for items in out:
                        items.append(("f", path))
                    rest: Iterator[bytes] = iter(partial(stream.readline, limit), b"")
                    for number, raw in enumerate(chain((first,) if first else (), rest), 1):
                        self.lines += 1
                        if len(raw) >= limit and raw[-1] != 10:  # 10: newline
                            size = len(raw) + _skip_line(stream, limit)
                            out[0].append(("b", "line_too_long", f"{path}:{number}",
                                           f"{size} bytes, more than max_line_bytes "
                                           f"({limit})", raw))
                            continue
                        if on_line is not None:
                            on_line(raw, f"{path}:{number}")
                        what, owner, received = route_line(raw, number, count)
                        if what == ANY:
                            item: Any = ("a", number, raw)
                            for items in out:
                                items.append(item)
                        else:
                            for index, items in enumerate(out):
                                if index == owner:
                                    items.append(("s", number, received or 0)
                                                 if what == CLOCK else ("o", number, raw))
                                elif received:
                                    items.append(received)
                        if number % BATCH_LINES == 0:
                            yield out
                            out = [[] for _ in range(count)]
            except _COMPRESSION_ERRORS as exc:  # the file ends here; the next one is read
                out[0].append(("b", "corrupt_gzip", f"{path}:{number + 1}",
                               f"{type(exc).__name__}: {exc}; the rest of the file is lost",
                               None))
            except OSError as exc:
                out[0].append(("b", "unreadable_file", path, str(exc), None))
        yield out
