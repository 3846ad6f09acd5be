"""DiskSpool: encoded batches kept on disk while their destination cannot take them.

A spool is a directory of files, oldest first, each holding one batch exactly as it is sent
(the OTLP sink's protobuf request, the Elasticsearch sink's JSON lines of bulk actions). A
file is named ``<sequence>-<count>-<pods><suffix>``: ``count`` is what the destination
counts (spans, documents), ``pods`` the pod records they carry, so a spool is measured
without reading it. A file is written to a temporary name, fsynced and renamed (then the
directory is fsynced), so a crash leaves either the whole batch or nothing; a new process
with the same directory finds what an old one left. Files are created 0600 in a 0700
directory: they hold what the sinks export.

The spool is bounded: past ``max_bytes`` the oldest files are dropped (and counted), except
``busy``, the file being sent. One writer per directory (two processes sharing one would
interleave sequence numbers), and not thread-safe: callers serialise. The directory is
created on the first append, never on construction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from lunettes.private_files import make_private_dir, open_private

log = logging.getLogger(__name__)

JSONL = ".jsonl"
ROOT = ".lunettes-spool"


def default_dir(sink_name: str) -> str:
    """A sink's spool directory unless configured: ``.lunettes-spool/<sink name>``."""
    return f"{ROOT}/{sink_name.replace('/', '-')}"


@dataclass(slots=True, eq=False)
class SpoolFile:
    """One spooled batch: its path, what it counts (spans, documents), its pod records and
    its size in bytes."""

    path: Path
    count: int
    pods: int
    size: int


@dataclass(slots=True)
class Dropped:
    """What the size limit dropped: ``count`` units of ``pods`` pod records."""

    count: int = 0
    pods: int = 0


class DiskSpool:
    """Append batches, read them back oldest first, drop the oldest past the limit."""

    def __init__(self, directory: str | Path, max_bytes: int, suffix: str = JSONL) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.suffix = suffix
        self.busy: SpoolFile | None = None
        """The file being sent: never dropped by the limit."""
        self._files: list[SpoolFile] | None = None
        self._next_seq = 0

    # -- reading ------------------------------------------------------------------------

    def files(self) -> list[SpoolFile]:
        """The spooled batches, oldest first (scanned from disk once, then kept)."""
        return list(self._loaded())

    def pending(self) -> int:
        """How many units (spans, documents) are spooled."""
        return sum(f.count for f in self._loaded())

    def pending_pods(self) -> int:
        """How many pod records are spooled."""
        return sum(f.pods for f in self._loaded())

    def size(self) -> int:
        return sum(f.size for f in self._loaded())

    def read_bytes(self, spooled: SpoolFile) -> bytes:
        """The batch of one file, as it was appended (empty if the file is gone)."""
        try:
            return spooled.path.read_bytes()
        except FileNotFoundError:
            return b""

    def read(self, spooled: SpoolFile) -> list[dict[str, Any]]:
        """The JSON objects of a file of JSON lines; unreadable lines are logged and
        skipped."""
        return decode_lines(self.read_bytes(spooled), str(spooled.path))

    # -- writing ------------------------------------------------------------------------

    def append_bytes(self, data: bytes, count: int, pods: int
                     ) -> tuple[SpoolFile | None, Dropped]:
        """Spool a batch durably; return its file and what was dropped to stay under
        ``max_bytes``, the oldest files first: possibly this very batch (its file is then
        None) if it alone is too big."""
        if not data or count <= 0:
            return None, Dropped()
        files = self._loaded()
        make_private_dir(self.directory)
        path = self.directory / f"{self._next_seq:012d}-{count}-{pods}{self.suffix}"
        self._next_seq += 1
        self._write(path, data)
        spooled = SpoolFile(path, count, pods, len(data))
        files.append(spooled)
        dropped = self._enforce_limit()
        return (spooled if spooled in files else None), dropped

    def append(self, actions: Iterable[dict[str, Any]], pods: int | None = None
               ) -> tuple[SpoolFile | None, Dropped]:
        """Spool JSON objects as JSON lines (``pods`` defaults to one per object)."""
        data = encode_lines(actions)
        count = data.count(b"\n")
        return self.append_bytes(data, count, count if pods is None else pods)

    def replace_bytes(self, spooled: SpoolFile, data: bytes, count: int, pods: int) -> None:
        """Keep only ``data`` in a file (what is left after a partial delivery): it keeps
        its place in the order. Empty data removes the file."""
        if not data or count <= 0:
            self.remove(spooled)
            return
        seq = spooled.path.name.split("-", 1)[0].split(".", 1)[0]
        path = self.directory / f"{seq}-{count}-{pods}{self.suffix}"
        self._write(path, data)
        if path != spooled.path:
            spooled.path.unlink(missing_ok=True)
        spooled.path, spooled.count, spooled.pods, spooled.size = path, count, pods, len(data)

    def remove(self, spooled: SpoolFile) -> None:
        """Forget a file (its batch was delivered or given up on)."""
        spooled.path.unlink(missing_ok=True)
        files = self._loaded()
        if spooled in files:
            files.remove(spooled)

    # -- internals ----------------------------------------------------------------------

    def _loaded(self) -> list[SpoolFile]:
        if self._files is None:
            self._files = self._scan()
        return self._files

    def _scan(self) -> list[SpoolFile]:
        found: list[tuple[int, SpoolFile]] = []
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write that never finished
                    continue
                spooled = self._parse(path)
                if spooled is not None:
                    found.append(spooled)
        found.sort(key=lambda item: item[0])
        self._next_seq = found[-1][0] + 1 if found else 0
        return [f for _, f in found]

    def _parse(self, path: Path) -> tuple[int, SpoolFile] | None:
        """(sequence, file) of a spool file name; None for anything else."""
        if not path.name.endswith(self.suffix):
            return None
        parts = path.name[:-len(self.suffix)].split("-")
        if not all(p.isdigit() for p in parts):
            return None
        size = path.stat().st_size
        if len(parts) == 3:
            return int(parts[0]), SpoolFile(path, int(parts[1]), int(parts[2]), size)
        if len(parts) == 1 and self.suffix == JSONL:  # written before counts were named
            lines = path.read_bytes().count(b"\n")
            return int(parts[0]), SpoolFile(path, lines, lines, size)
        return None

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open_private(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.directory)

    def _enforce_limit(self) -> Dropped:
        files = self._loaded()
        dropped = Dropped()
        total = sum(f.size for f in files)
        for oldest in list(files):
            if total <= self.max_bytes:
                break
            if oldest is self.busy:
                continue
            total -= oldest.size
            dropped.count += oldest.count
            dropped.pods += oldest.pods
            self.remove(oldest)
            log.error(
                "spool %s is over its limit of %.1f MB: dropped its oldest file %s "
                "(%d pod records lost)", self.directory, self.max_bytes / 2**20,
                oldest.path.name, oldest.pods,
            )
        return dropped


def encode_lines(objects: Iterable[dict[str, Any]]) -> bytes:
    """JSON objects as JSON lines."""
    return b"".join(orjson.dumps(o, option=orjson.OPT_APPEND_NEWLINE) for o in objects)


def decode_lines(data: bytes, origin: str = "spool") -> list[dict[str, Any]]:
    """The JSON objects of JSON lines; lines that are not objects are logged and skipped."""
    objects: list[dict[str, Any]] = []
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            log.error("%s line %d is not JSON (%s); skipped", origin, number, exc)
            continue
        if isinstance(value, dict):
            objects.append(value)
        else:
            log.error("%s line %d is not an object; skipped", origin, number)
    return objects


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)
