"""Write audit lines (JSON lines or webhook-style EventList documents) and truth rows."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from typing import IO, Any

import orjson

__all__ = ["open_output", "write_events", "write_truth"]

_LIST_HEAD = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['


@contextmanager
def open_output(path: str | None):  # type: ignore[no-untyped-def]
    """A binary sink: stdout for None/``-``, gzip (deterministic header) for ``.gz``."""
    if path in (None, "-"):
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    assert path is not None
    raw = open(path, "wb")  # noqa: SIM115
    try:
        if path.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                               compresslevel=6) as gz:
                yield gz
        else:
            yield raw
    finally:
        raw.close()


def write_events(lines: Iterable[bytes], out: IO[bytes], eventlist: int = 0) -> int:
    """Write serialized audit events one per line, or ``eventlist`` per EventList line.

    Returns the number of events written.
    """
    count = 0
    batch: list[bytes] = []
    size = eventlist if eventlist > 0 else 4096
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            count += _flush(batch, out, eventlist)
            batch = []
    if batch:
        count += _flush(batch, out, eventlist)
    return count


def _flush(batch: list[bytes], out: IO[bytes], eventlist: int) -> int:
    if eventlist > 0:
        out.write(_LIST_HEAD + b",".join(batch) + b"]}\n")
    else:
        out.write(b"\n".join(batch) + b"\n")
    return len(batch)


def write_truth(rows: Iterable[dict[str, Any]], path: str) -> int:
    """Write ground-truth rows as JSON lines (``.gz`` by suffix); returns the row count."""
    n = 0
    with open_output(path) as out:
        for row in rows:
            out.write(orjson.dumps(row) + b"\n")
            n += 1
    return n
