"""FollowSource: audit records from JSON-lines files as they grow, across rotations.

For ``lunettes serve --follow`` and the ``follow`` source type. Each file is read to its
end, then polled for new lines until :meth:`FollowSource.close`; a line is decoded only
once its newline arrived. A file is known by its device and inode, and read by offset:

- **rename and create** (kube-apiserver's ``--audit-log-maxsize``/``--audit-log-maxbackup``,
  ``mv audit.log audit.log.1`` then a new ``audit.log``): when the name points to another
  inode, the old file is read to its end through the descriptor still open, then the newer
  files are read in modification order (several rotations between two polls, or while
  lunettes was down) and finally the new file from its start.
- **copytruncate** (logrotate): when the file becomes shorter than the offset read, or its
  first bytes change (it was truncated, then written past the old offset), the
  lines written between the last read and the truncation are read from the copy (the
  newest sibling, such as ``audit.log.1``, holding the same first bytes and at least as
  many), then the truncated file from its start. Lines written after the copy and before
  the truncation are lost by copytruncate itself (its documented race).

Each record carries ``position = (lane, n)``, one lane per path; :meth:`checkpoint` turns
``n`` into the file's device, inode and the line's offset, from which a source built with
``resume`` re-reads that line first, finding the file under its rotated name if need be.
``state`` is ``following`` once caught up, ``stalled`` when a file cannot be read (gone,
unreadable) for ``stall_s``, and the source goes on polling: a damaged or missing file is
reported, never fatal.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord, skipped, tick, undecoded
from lunettes.registry import BuildContext
from lunettes.sources.decode import decode_document
from lunettes.sources.errors import BadRecord, BadRecords
from lunettes.sources.files import MAX_LINE_BYTES, resolve
from lunettes.sources.jsonline import loads
from lunettes.sources.peek import Peek, clock_only, deferred, peek

__all__ = ["FollowSource"]

_GEN = 1 << 48  # n = generation * _GEN + offset
_HEAD = 256  # bytes compared to recognise a copytruncate copy
_CHUNK = 1 << 20


@dataclass
class _File:
    """One file being read: its identity, descriptor and offset after the last line."""

    path: str
    stream: IO[bytes]
    device: int
    inode: int
    offset: int = 0
    number: int = 0
    head: bytes = b""


@dataclass
class _Lane:
    """One followed path: the file being read and the identities read so far."""

    path: str
    key: str
    current: _File | None = None
    generation: int = 0
    files: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    """generation -> (path, device, inode), for checkpoints."""
    done: set[tuple[int, int]] = field(default_factory=set)
    failing_since: float | None = None


class FollowSource:
    """Yields AuditRecords from ``paths`` (plain files) as lines are appended, until
    :meth:`close` (or ``stop`` is set). ``on_caught_up`` is called once, the first time
    every file has been read to its end. Bad lines are counted in ``bad``, and records that
    cannot be about a Pod are left undecoded, as :class:`FileSource` does. ``resume``
    maps lanes (``name:path``) to checkpoints (:meth:`checkpoint`); ``wake``, when set by a
    writer, ends a poll early. With ``heartbeat``, each idle poll yields a
    ``tick(0)``: the pipeline's chance to write a checkpoint while nothing arrives. With
    ``decode_late``, final records are yielded undecoded where their bytes tell enough
    (as :class:`FileSource` does)."""

    live = True

    def __init__(self, paths: Iterable[str], stop: threading.Event | None = None, *,
                 poll_s: float = 0.2, bad: BadRecords | None = None,
                 on_caught_up: Callable[[], None] | None = None, name: str = "follow",
                 resume: dict[str, Any] | None = None, stall_s: float = 30.0,
                 wake: threading.Event | None = None, heartbeat: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 decode_late: bool = False) -> None:
        self.paths = list(paths)
        self.decode_late = decode_late
        for path in self.paths:
            if path == "-" or path.endswith(".gz") or os.path.isdir(path):
                raise ValueError(f"{path}: --follow reads plain files only (not stdin, .gz "
                                 f"or directories)")
        self.name = name
        self.stop = stop if stop is not None else threading.Event()
        self.wake = wake if wake is not None else self.stop
        self.poll_s = poll_s
        self.stall_s = stall_s
        self.clock = clock
        self.bad = bad if bad is not None else BadRecords()
        self.on_caught_up = on_caught_up
        self.resume = resume or {}
        self.keep_lines = False
        """Records read from one line of JSON carry it in ``raw`` (set by the pipeline),
        unless a :attr:`line_reader` reads them."""
        self.line_reader: Callable[[bytes, str], Peek | None] | None = None
        """Reads each line instead of :func:`~lunettes.sources.peek.peek` (see
        :attr:`FileSource.line_reader <lunettes.sources.files.FileSource.line_reader>`)."""
        self.heartbeat = heartbeat
        self.state, self.error = "starting", ""
        self.lanes = [_Lane(path, f"{name}:{path}") for path in self.paths]

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> FollowSource:
        """``paths`` (plain files; relative to the config directory), ``poll_s`` (0.2) and
        ``stall_s`` (30: how long a file may be unreadable before the source says
        ``stalled``)."""
        if "paths" not in section.data:
            section.problem("paths", "missing (required)")
        paths = section.strings("paths") or []
        poll_s = section.get("poll_s", 0.2, float)
        stall_s = section.get("stall_s", 30.0, float)
        section.check_unknown()
        try:
            return cls(resolve(paths, context), poll_s=max(0.001, poll_s), bad=context.bad,
                       name=key, resume=context.resume, stall_s=stall_s, heartbeat=True,
                       decode_late=context.decode_late)
        except ValueError as exc:
            section.problem("paths", str(exc))
            return cls([], name=key)

    def close(self) -> None:
        self.stop.set()
        self.wake.set()

    def read_to_end(self) -> set[tuple[int, int]]:
        """(device, inode) of the rotated files read to their end (safe from any thread)."""
        return set().union(*(lane.done.copy() for lane in self.lanes))

    def checkpoint(self, key: str, n: int) -> dict[str, Any] | None:
        """Where the record at ``n`` of lane ``key`` starts: path, device, inode, offset."""
        lane = next((lane for lane in self.lanes if lane.key == key), None)
        known = lane.files.get(n // _GEN) if lane is not None else None
        if known is None:
            return None
        path, device, inode = known
        return {"path": path, "device": device, "inode": inode, "offset": n % _GEN}

    # -- reading ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[AuditRecord]:
        self.state = "reading"
        caught_up = False
        try:
            for lane in self.lanes:
                self._start(lane)
            while not self.stop.is_set():
                progressed = False
                for lane in self.lanes:
                    for start, raw, origin in self._lines(lane):
                        progressed = True
                        position = (lane.key, lane.generation * _GEN + start)
                        for record in self._decode(raw, origin):
                            record.position = position
                            yield record
                if not progressed:
                    self._health()
                    if not caught_up and self.on_caught_up is not None:
                        self.on_caught_up()
                    caught_up = True
                    if self.heartbeat:
                        yield tick(0)
                    self.wake.wait(self.poll_s)
                    if self.wake is not self.stop:
                        self.wake.clear()
        finally:
            for lane in self.lanes:
                if lane.current is not None:
                    lane.current.stream.close()
                    lane.current = None
            self.state = "done"

    def _health(self) -> None:
        failing = [lane for lane in self.lanes if lane.failing_since is not None]
        if failing and self.clock() - min(lane.failing_since or 0 for lane in failing) \
                >= self.stall_s:
            self.state = "stalled"
        else:  # caught up; a file that cannot be read yet keeps its error shown
            self.state = "following"
            if not failing:
                self.error = ""

    def _fail(self, lane: _Lane, message: str) -> None:
        if lane.failing_since is None:
            lane.failing_since = self.clock()
        self.error = message

    def _open(self, lane: _Lane, path: str, offset: int = 0) -> bool:
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed when the lane moves on
        except OSError as exc:
            self._fail(lane, f"{path}: {exc.strerror or exc}")
            return False
        st = os.fstat(stream.fileno())
        head = os.pread(stream.fileno(), _HEAD, 0)
        lane.generation += 1
        lane.files[lane.generation] = (path, st.st_dev, st.st_ino)
        lane.current = _File(path, stream, st.st_dev, st.st_ino, min(offset, st.st_size),
                             head=head)
        lane.failing_since = None
        return True

    def _start(self, lane: _Lane) -> None:
        """Open a lane's file, at its checkpoint when there is one (the file found by its
        inode, under its own or a rotated name)."""
        saved = self.resume.get(lane.key)
        if not isinstance(saved, dict):
            self._open(lane, lane.path)
            return
        identity = (saved.get("device"), saved.get("inode"))
        for path in [lane.path, *_siblings(lane.path)]:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == identity:
                    self._open(lane, path, int(saved.get("offset") or 0))
                    return
        self.bad.add("checkpoint_file_gone", lane.path,
                     f"inode {identity[1]} is no longer there; reading from the start")
        self._open(lane, lane.path)

    def _lines(self, lane: _Lane) -> Iterator[tuple[int, bytes, str]]:
        """(offset, line, origin) of the complete lines readable now, following
        rotations."""
        if lane.current is None and not self._open(lane, lane.path):
            return
        try:
            yield from self._follow(lane)
        except OSError as exc:  # an I/O error: reported, retried at the next poll
            self._fail(lane, f"{lane.path}: {exc.strerror or exc}")

    def _follow(self, lane: _Lane) -> Iterator[tuple[int, bytes, str]]:
        while lane.current is not None:
            file = lane.current
            yield from self._read(file)
            lane.failing_since = None  # read without an error
            moved = self._rotated(lane, file)
            if moved is None:
                return
            # renamed away: its last lines were read through the open descriptor above
            yield from self._read(file)
            file.stream.close()
            lane.done.add((file.device, file.inode))
            lane.current = None
            if not self._open(lane, moved):
                return

    def _read(self, file: _File) -> Iterator[tuple[int, bytes, str]]:
        """The complete lines past the offset, read a chunk at a time (each chunk checked
        for a truncation first: the generator may pause between two lines)."""
        fd = file.stream.fileno()
        while True:
            try:
                size = os.fstat(fd).st_size
            except OSError:
                return
            if size == file.offset:
                return
            if size < file.offset or (file.head and os.pread(fd, len(file.head), 0)
                                      != file.head):
                yield from self._truncated(file)  # shorter, or rewritten from its start
                continue
            want = size - file.offset
            data = os.pread(fd, min(want, _CHUNK), file.offset)
            end = data.rfind(b"\n")
            if end < 0 and len(data) < want:  # one line longer than a chunk
                data = os.pread(fd, want, file.offset)
                end = data.rfind(b"\n")
            if end < 0:
                return  # the rest of the line is not written yet
            for line in data[:end + 1].splitlines(keepends=True):
                start = file.offset
                file.offset += len(line)
                file.number += 1
                yield start, line, f"{file.path}:{file.number}"
            if len(file.head) < _HEAD:
                file.head = os.pread(fd, _HEAD, 0)

    def _truncated(self, file: _File) -> Iterator[tuple[int, bytes, str]]:
        """copytruncate: the copy's lines past our offset, then the file from its start."""
        copy = _copy_of(file)
        if copy is not None:
            with open(copy, "rb") as stream:
                stream.seek(file.offset)
                for line in stream:
                    if not line.endswith(b"\n"):
                        break
                    file.number += 1  # resumes at the truncated file's start
                    yield 0, line, f"{copy}:{file.number}"
        file.offset, file.number, file.head = 0, 0, b""

    def _rotated(self, lane: _Lane, file: _File) -> str | None:
        """The next file to read when ``file`` was renamed away from the lane's path."""
        try:
            st = os.stat(lane.path)
        except FileNotFoundError:
            return None  # renamed, the new file is not there yet: keep reading the old
        except OSError as exc:
            self._fail(lane, f"{lane.path}: {exc.strerror or exc}")
            return None
        if (st.st_dev, st.st_ino) == (file.device, file.inode):
            return None
        # files rotated within one tick of the coarse file clock share an mtime: those
        # not read yet count as newer, in name order (audit-<time>.log, spool.000002)
        seen = {*lane.done, (file.device, file.inode), (st.st_dev, st.st_ino)}
        final = os.fstat(file.stream.fileno()).st_mtime
        newer = []
        for path in _siblings(lane.path):  # rotated several times since the last look
            with contextlib.suppress(OSError):
                other = os.stat(path)
                if (other.st_dev, other.st_ino) not in seen and other.st_mtime >= final:
                    newer.append((other.st_mtime, path))
        return min(newer)[1] if newer else lane.path

    def _decode(self, raw: bytes, origin: str) -> Iterator[AuditRecord]:
        """The records of one line; whatever it holds, a bad line is counted, never
        raised (a reader that failed on it would fail again on every restart)."""
        try:
            yield from self._records(raw, origin)
        except Exception as exc:  # a bug must not stop the reader: count it, where it was
            self.bad.add(f"internal_error:{type(exc).__name__}", origin, str(exc)[:200], raw)

    def _records(self, raw: bytes, origin: str) -> Iterator[AuditRecord]:
        if not raw.strip():
            return
        if len(raw) > MAX_LINE_BYTES:
            self.bad.add("line_too_long", origin,
                         f"{len(raw)} bytes, more than {MAX_LINE_BYTES}", raw)
            return
        reader = self.line_reader
        seen = peek(raw) if reader is None else reader(raw, origin)
        keep = self.keep_lines and reader is None
        received = None if seen is None else clock_only(raw, seen)
        if received is not None:  # nothing about a Pod (see FileSource)
            other = skipped(received, origin)
            if keep:
                other.raw = raw
            yield other
            return
        told = deferred(raw, seen) if seen is not None and seen.final and \
            self.decode_late else None
        if told is not None:  # decoded when the pipeline folds it (see FileSource)
            record = undecoded(*told, raw, origin)
            if keep:
                record.raw = raw
            yield record
            return
        try:
            doc = loads(raw)
        except orjson.JSONDecodeError as exc:
            self.bad.add("invalid_json", origin, str(exc), raw)
            return
        for item in decode_document(doc, origin):
            if isinstance(item, BadRecord):
                self.bad.add(item.reason, origin, str(item), raw)
            else:
                if keep:  # the first record carries the line (a list's line is read once)
                    item.raw, keep = raw, False
                yield item


def _siblings(path: str) -> list[str]:
    """Plain files next to ``path`` named after it (``audit.log.1``, ``audit-<time>.log``),
    not compressed ones."""
    folder = os.path.dirname(path) or "."
    base = os.path.basename(path)
    stem = base.rsplit(".", 1)[0]
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, n) for n in sorted(names)
            if n != base and n.startswith(stem) and not n.endswith(".gz")]


def _copy_of(file: _File) -> str | None:
    """The newest sibling that starts with the same bytes and is at least as long."""
    best: tuple[float, str] | None = None
    for path in _siblings(file.path):
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == (file.device, file.inode) or st.st_size < file.offset:
                continue
            with open(path, "rb") as stream:
                if stream.read(len(file.head)) != file.head:
                    continue
            if best is None or st.st_mtime > best[0]:
                best = (st.st_mtime, path)
    return best[1] if best is not None else None
