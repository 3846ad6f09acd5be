"""DiskSpool: bulk actions kept on disk while their destination cannot take them.

A spool is a directory of files named ``<sequence>.jsonl``, oldest first, each holding the
JSON lines of one batch of already-built actions. A file is written to a temporary name,
fsynced and renamed (then the directory is fsynced), so a crash leaves either the whole
batch or nothing; a new process with the same directory finds what an old one left.
The spool is bounded: past ``max_bytes`` the oldest files are dropped (and counted).

One writer per directory: two processes sharing a spool directory would interleave
sequence numbers. The directory is created on the first append, never on construction.
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

SUFFIX = ".jsonl"


@dataclass(slots=True)
class SpoolFile:
    """One spooled batch: its path, number of actions and size in bytes."""

    path: Path
    count: int
    size: int


class DiskSpool:
    """Append batches, read them back oldest first, drop the oldest past the limit."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._files: list[SpoolFile] | None = None
        self._next_seq = 0

    # -- reading ------------------------------------------------------------------------

    def files(self) -> list[SpoolFile]:
        """The spooled batches, oldest first (scanned from disk once, then kept)."""
        if self._files is None:
            self._files = self._scan()
        return list(self._files)

    def pending(self) -> int:
        """How many actions are spooled."""
        return sum(f.count for f in self.files())

    def size(self) -> int:
        return sum(f.size for f in self.files())

    def read(self, spooled: SpoolFile) -> list[dict[str, Any]]:
        """The actions of one file; unreadable lines are logged and skipped."""
        actions: list[dict[str, Any]] = []
        try:
            data = spooled.path.read_bytes()
        except FileNotFoundError:
            return actions
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                action = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                log.error("spool %s line %d is not JSON (%s); skipped", spooled.path, number, exc)
                continue
            if isinstance(action, dict):
                actions.append(action)
            else:
                log.error("spool %s line %d is not an object; skipped", spooled.path, number)
        return actions

    # -- writing ------------------------------------------------------------------------

    def append(self, actions: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Spool a batch durably; return (actions spooled, actions dropped to stay under
        ``max_bytes``, the oldest first: possibly this very batch if it alone is too big)."""
        data = b"".join(orjson.dumps(a, option=orjson.OPT_APPEND_NEWLINE) for a in actions)
        count = data.count(b"\n")
        if not count:
            return 0, 0
        files = self._loaded()
        make_private_dir(self.directory)
        path = self.directory / f"{self._next_seq:012d}{SUFFIX}"
        self._next_seq += 1
        self._write(path, data)
        files.append(SpoolFile(path, count, len(data)))
        return count, self._enforce_limit()

    def replace(self, spooled: SpoolFile, actions: list[dict[str, Any]]) -> None:
        """Keep only ``actions`` in a file (what is left after a partial drain); it keeps
        its place in the order. An empty list removes the file."""
        if not actions:
            self.remove(spooled)
            return
        data = b"".join(orjson.dumps(a, option=orjson.OPT_APPEND_NEWLINE) for a in actions)
        self._write(spooled.path, data)
        spooled.count, spooled.size = len(actions), len(data)

    def remove(self, spooled: SpoolFile) -> None:
        """Forget a file (its actions were delivered or given up on)."""
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
                if path.suffix != SUFFIX or not path.stem.isdigit():
                    continue
                data = path.read_bytes()
                found.append((int(path.stem), SpoolFile(path, data.count(b"\n"), len(data))))
        found.sort(key=lambda item: item[0])
        self._next_seq = found[-1][0] + 1 if found else 0
        return [f for _, f in found]

    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open_private(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.directory)

    def _enforce_limit(self) -> int:
        files = self._loaded()
        dropped = 0
        total = sum(f.size for f in files)
        while files and total > self.max_bytes:
            oldest = files[0]
            total -= oldest.size
            dropped += oldest.count
            self.remove(oldest)
            log.error(
                "spool %s is over its limit of %.1f MB: dropped its oldest file %s "
                "(%d documents lost)", self.directory, self.max_bytes / 2**20, oldest.path.name,
                oldest.count,
            )
        return dropped


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
