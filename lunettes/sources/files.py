"""Read audit records from files, .gz files, directories of rotated logs and stdin."""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord, skipped, tick, undecoded
from lunettes.registry import BuildContext
from lunettes.sources.decode import audit_version, decode_document, decode_event
from lunettes.sources.errors import BadRecord, BadRecords
from lunettes.sources.exports import strip_time_prefix
from lunettes.sources.fastdecode import fast_event
from lunettes.sources.jsonline import loads
from lunettes.sources.partition import ANY, CLOCK, Partition, route_seen
from lunettes.sources.peek import Peek, deferred, peek

STDIN = "-"
MAX_LINE_BYTES = 64 << 20
"""The longest line read by default (``sources.file.max_line_bytes`` in pipeline.yaml)."""
_COMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
_YAML_SUFFIXES = (".yaml", ".yml")
_BOM = b"\xef\xbb\xbf"
_GZIP = b"\x1f\x8b"


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, as JSON would."""


_PlainLoader.yaml_implicit_resolvers = {
    key: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def expand(paths: Iterable[str], skipped: list[str] | None = None) -> list[str]:
    """Expand directories into their log files, oldest first; keep files and ``-`` as given.

    Every file of a directory whose bytes start like a log (gzip, JSON, a UTF-8 BOM, a time
    before JSON) or whose name ends in ``.yaml``/``.yml`` is read, whatever the rotation
    naming (``audit.log``, ``audit.log.1``, ``audit.log-20260101``,
    ``audit-2026-01-01T00-00-00.000.log``, ``.gz``): they are ordered by the time of their
    first record. The others are appended to ``skipped`` as ``path: why``.
    """
    out: list[str] = []
    for path in paths:
        if path != STDIN and os.path.isdir(path):
            files = []
            for p in sorted(Path(path).rglob("*")):
                if not p.is_file():
                    continue
                why = _not_a_log(p)
                if why is None:
                    files.append(str(p))
                elif skipped is not None:
                    skipped.append(f"{p}: {why}")
            out.extend(sorted(files, key=lambda f: (_first_time(f), f)))
        else:
            out.append(path)
    return out


def _not_a_log(path: Path) -> str | None:
    """Why a file found in a directory is not read as a log; None when it is."""
    if path.name.startswith("."):
        return "hidden file"
    if path.name.endswith(_YAML_SUFFIXES):
        return None
    try:
        with open(path, "rb") as stream:
            head = stream.read(64)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    start = head.removeprefix(_BOM).lstrip()
    if (not start or head.startswith(_GZIP) or start[:1] in (b"{", b"[")
            or strip_time_prefix(start) is not None):
        return None
    return f"not an audit log (starts with {head[:16]!r})"


def resolve(paths: Iterable[str], context: BuildContext) -> list[str]:
    """Configured paths, relative ones taken from the config directory (``-`` kept)."""
    return [p if p == STDIN else str(context.config_dir / p) for p in paths]


def _first_time(path: str) -> str:
    """The requestReceivedTimestamp of a file's first record (empty if none is found)."""
    try:
        with _open(path) as stream:
            for raw in stream:
                try:
                    doc = loads(strip_time_prefix(raw) or raw)
                except orjson.JSONDecodeError:
                    return ""
                for item in decode_document(doc):
                    if isinstance(item, AuditRecord):
                        return f"{item.received_us:020d}"
                return ""
    except Exception:  # any problem is reported when the file is read
        return ""
    return ""


def _whole_json(raw: bytes) -> bool:
    """True when the line is a JSON value of its own."""
    try:
        loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


def is_yaml(path: str) -> bool:
    """True for a file read as YAML documents (by its name: ``.yaml``, ``.yml``)."""
    return path.endswith(_YAML_SUFFIXES)


def yaml_documents(stream: IO[bytes], name: str, bad: BadRecords) -> Iterator[tuple[int, Any]]:
    """The non-empty documents of a YAML file with their numbers (from 1); timestamps stay
    strings, as JSON would have them. A file that does not parse is counted in ``bad``
    (``invalid_yaml``, with its line) and yields nothing."""
    try:
        docs = list(yaml.load_all(io.TextIOWrapper(stream, "utf-8"), Loader=_PlainLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name}:{mark.line + 1}" if mark else name
        bad.add("invalid_yaml", where, str(exc).splitlines()[0])
        return
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        bad.add("invalid_yaml", name, f"{type(exc).__name__}: {str(exc)[:200]}")
        return
    for index, doc in enumerate(docs, 1):
        if doc is not None:
            yield index, doc


def _skip_line(stream: IO[bytes], limit: int) -> int:
    """Read past the rest of a line too long to keep; return how many bytes that was."""
    size = 0
    while True:
        chunk = stream.readline(limit)
        size += len(chunk)
        if not chunk or chunk[-1] == 10:  # 10: newline
            return size


class _Counted(io.RawIOBase):
    """A file whose reads tell ``on_bytes`` how many bytes came from the disk (for a gzip
    file the compressed ones, which a progress bar measures against the file's size)."""

    def __init__(self, raw: io.FileIO, on_bytes: Callable[[int], None]) -> None:
        self.raw, self.on_bytes = raw, on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.raw.readinto(buffer) or 0
        if count:
            self.on_bytes(count)
        return count

    def close(self) -> None:
        self.raw.close()
        super().close()


def _open(path: str, on_bytes: Callable[[int], None] | None = None) -> IO[bytes]:
    """The bytes of a file (gunzipped when gzip) or stdin, after a UTF-8 BOM if any;
    ``on_bytes`` is told the bytes read from the file itself (not from stdin)."""
    if path == STDIN:
        return _skip_bom(sys.stdin.buffer)
    if on_bytes is None:
        stream: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller's with
    else:
        stream = io.BufferedReader(_Counted(io.FileIO(path, "rb"), on_bytes), 1 << 16)
    if stream.peek(2)[:2] == _GZIP:  # type: ignore[attr-defined]
        return _skip_bom(gzip.GzipFile(fileobj=stream))  # type: ignore[arg-type]
    return _skip_bom(stream)


def _skip_bom(stream: Any) -> IO[bytes]:
    """Read past the UTF-8 byte order mark Windows tools (Azure exports) start files with."""
    if not hasattr(stream, "peek"):
        stream = io.BufferedReader(stream)
    if stream.peek(3)[:3] == _BOM:
        stream.read(3)
    return stream  # type: ignore[no-any-return]


def _with_line(records: Iterator[AuditRecord], raw: bytes) -> Iterator[AuditRecord]:
    """``records`` of one line, the first carrying the line (an EventList's line is read
    once, for all its events)."""
    first = True
    for record in records:
        if first:
            record.raw = raw
            first = False
        yield record


class FileSource:
    """Yields AuditRecords from paths; bad lines are counted in ``bad`` with file:line.

    ``on_bytes`` (if given) is called with the number of bytes read from the files (for a
    gzip file the compressed bytes), for progress bars against their sizes.
    Records that cannot be about a Pod (other resources and verbs: leases, lists,
    watches...) are read from their bytes only (:mod:`lunettes.sources.peek`) and yielded
    undecoded, as :func:`~lunettes.model.audit.skipped` records, unless ``every_record``.
    With ``partition`` (one worker of several, see :mod:`lunettes.sources.partition`) it
    yields only the records that worker owns, and clock ticks for the others' final records;
    with a ``feed`` too, it reads only the lines a pre-scan routed to it.
    With ``decode_late``, final records its bytes tell enough about are yielded undecoded
    (:func:`~lunettes.model.audit.undecoded`) for the pipeline to decode when it folds them.
    A :class:`~lunettes.sources.base.Source` (type ``file``: ``paths``), not resumable;
    :meth:`close` stops it at the next file.
    """

    live = False

    def __init__(self, paths: Iterable[str], bad: BadRecords | None = None,
                 on_bytes: Callable[[int], None] | None = None,
                 partition: Partition | None = None, every_record: bool = False,
                 name: str = "file", max_line_bytes: int = MAX_LINE_BYTES,
                 feed: Iterable[list[Any]] | None = None,
                 decode_late: bool = False) -> None:
        self.name = name
        self.decode_late = decode_late
        self.state, self.error = "starting", ""
        self._closed = False
        self.skipped_files: list[str] = []
        """Files of the directories given that are not read, as ``path: why``."""
        self.paths = expand(paths, self.skipped_files)
        self.every_record = every_record
        self.bad = bad if bad is not None else BadRecords()
        self.on_bytes = on_bytes
        self.partition = partition
        self.max_line_bytes = max_line_bytes
        """Longer lines are refused unread (``line_too_long``), their bytes skipped."""
        self.feed = feed
        """With a partition: batches of the lines a pre-scan routed to it (see
        :mod:`lunettes.sources.prescan`), read instead of ``paths``."""
        self.lines = 0
        self.keep_lines = False
        """Records read from one line of JSON carry it in ``raw`` (the first record of a
        line; set by the pipeline when a processor reads lines), unless a
        :attr:`line_reader` reads them."""
        self.line_reader: Callable[[bytes, str], Peek | None] | None = None
        """Reads each line (and where it was) instead of
        :func:`~lunettes.sources.peek.peek`, set by a processor that reads every line
        itself (the API server load analysis): lines are then not handed on in ``raw``."""

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> FileSource:
        """``paths``: files, .gz files, directories of rotated logs, or ``-`` (stdin);
        relative names are relative to the config directory."""
        if "paths" not in section.data:
            section.problem("paths", "missing (required)")
        paths = section.strings("paths")
        max_line_bytes = section.get("max_line_bytes", MAX_LINE_BYTES, int)
        if max_line_bytes < 1:
            section.problem("max_line_bytes", "must be positive")
        section.check_unknown()
        return cls(resolve(paths or [], context), context.bad, name=key,
                   max_line_bytes=max(1, max_line_bytes), decode_late=context.decode_late)

    def checkpoint(self, lane: str, n: int) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        self._closed = True

    def __iter__(self) -> Iterator[AuditRecord]:
        self.state = "reading"
        if self.feed is not None:
            yield from self._fed(self.feed)
        else:
            for path in self.paths:
                if self._closed:
                    break
                yield from self._read(path)
        self.state = "done"

    def _read(self, path: str) -> Iterator[AuditRecord]:
        """The records of one file (or stdin)."""
        name = "<stdin>" if path == STDIN else path
        before = self.lines
        try:
            with _open(path, self.on_bytes) as stream:
                if is_yaml(path):
                    yield from self._yaml(stream, name)
                else:
                    yield from self._json(stream, name)
        except _COMPRESSION_ERRORS as exc:  # the file ends here; the next one is read
            if self.partition is None or self.partition.index == 0:
                self.bad.add("corrupt_gzip", f"{name}:{self.lines - before + 1}",
                             f"{type(exc).__name__}: {exc}; the rest of the file is lost")
        except OSError as exc:
            if self.partition is None or self.partition.index == 0:
                self.bad.add("unreadable_file", name, str(exc))

    def _fed(self, feed: Iterable[list[Any]]) -> Iterator[AuditRecord]:
        """The records of the lines a pre-scan routed here (see
        :mod:`lunettes.sources.prescan`, which says what each item means)."""
        name, decode, bad = "", self._decode, self.bad
        for batch in feed:
            if self._closed:
                return
            for item in batch:
                if type(item) is int:
                    yield tick(item, name)
                    continue
                what = item[0]
                if what == "o":
                    yield from decode(item[2], name, item[1], True)
                elif what == "s":
                    yield skipped(item[2], f"{name}:{item[1]}")
                elif what == "a":
                    yield from decode(item[2], name, item[1], False)
                elif what == "f":
                    name = item[1]
                elif what == "r":
                    yield from self._read(item[1])
                elif what == "b":
                    bad.add(*item[1:])

    def _emit(self, doc: Any, origin: str, whole: bool = False, line: bytes | None = None
              ) -> Iterator[AuditRecord]:
        """The records of a document (read from ``line``, when one line holds it);
        ``whole``: the partition routed it here entire. With ``keep_lines``, the first
        record of a document of several lines (YAML, a file that is one JSON document)
        carries it as one line of JSON."""
        part = None if whole else self.partition
        keep = self.keep_lines and line is None
        for item in decode_document(doc, origin):
            if isinstance(item, BadRecord):
                if part is None or part.index == 0:  # counted once over all workers
                    self.bad.add(item.reason, origin, str(item), line)
            elif part is None:
                if keep:
                    item.raw, keep = orjson.dumps(doc), False
                yield item
            else:
                yield from part.filter(item, origin)

    def _json(self, stream: IO[bytes], name: str) -> Iterator[AuditRecord]:
        """JSON lines; a file that is one multi-line JSON document is read whole.

        A file is one document only when its first line starts a JSON value without being
        one and the whole file (at most ``max_line_bytes``) is one: otherwise it is read
        line by line, an invalid first line counted like any other.
        """
        limit = self.max_line_bytes
        lines: Iterator[bytes] = iter(partial(stream.readline, limit), b"")
        first = next(lines, b"")
        if first.lstrip()[:1] in (b"{", b"[") and not _whole_json(first):
            rest = stream.read(limit)
            if len(first) + len(rest) <= limit:
                whole = first + rest
                try:
                    doc = loads(whole)
                except orjson.JSONDecodeError:
                    pass
                else:
                    self.lines += whole.count(b"\n")
                    yield from self._emit(doc, f"{name}:1")
                    return
            buffered = (first + rest).splitlines(keepends=True)
            if buffered and not buffered[-1].endswith(b"\n"):  # a line cut short: join it
                buffered[-1] += next(lines, b"")
            lines = chain(buffered, lines)
        elif first:
            lines = chain((first,), lines)
        yield from self._lines(lines, stream, name)

    def _lines(self, lines: Iterator[bytes], stream: IO[bytes], name: str
               ) -> Iterator[AuditRecord]:
        """The records of JSON lines. Each line is a guarded boundary: whatever it holds
        is either yielded as records or counted as bad with its place, and the next line
        is read."""
        bad, part = self.bad, self.partition
        mine, workers = (part.index, part.count) if part is not None else (0, 1)
        every, limit, decode = self.every_record, self.max_line_bytes, self._decode
        late, reader = self.decode_late, self.line_reader
        keep = self.keep_lines and reader is None
        for number, raw in enumerate(lines, 1):
            self.lines += 1
            if len(raw) >= limit and raw[-1] != 10:  # 10: newline
                size = len(raw) + _skip_line(stream, limit)
                if mine == 0:
                    bad.add("line_too_long", f"{name}:{number}",
                            f"{size} bytes, more than max_line_bytes ({limit})", raw)
                continue
            try:
                seen = peek(raw) if reader is None else reader(raw, f"{name}:{number}")
                what, owner, received = route_seen(raw, seen, number, workers, every)
            except Exception as exc:  # a bug must not stop the run: count it, where it was
                if mine == 0:
                    bad.add(f"internal_error:{type(exc).__name__}", f"{name}:{number}",
                            str(exc)[:200], raw)
                continue
            if owner == mine:
                if what == CLOCK:  # nothing about a Pod: count it, move the clock
                    record = skipped(received or 0, f"{name}:{number}")
                    if keep:
                        record.raw = raw
                    yield record
                else:
                    told = (deferred(raw, seen, received)  # received: a final stage's
                            if late and seen is not None and received is not None else None)
                    if told is not None:  # decoded when the pipeline folds it
                        record = undecoded(*told, raw, f"{name}:{number}")
                        if keep:
                            record.raw = raw
                        yield record
                    elif keep:
                        yield from _with_line(decode(raw, name, number, True), raw)
                    else:
                        yield from decode(raw, name, number, True)
            elif what == ANY:  # (one process: its line for the analysis, when asked)
                records = decode(raw, name, number, False)
                yield from _with_line(records, raw) if keep and workers == 1 else records
            elif received:
                yield tick(received, name)

    def _decode(self, raw: bytes, name: str, number: int, routed: bool
                ) -> Iterator[AuditRecord]:
        """The records of one line; ``routed``: this worker owns the line (else it keeps
        only the records it owns). Whatever it holds is either yielded as records or
        counted as bad with its place."""
        bad, part = self.bad, self.partition
        origin = f"{name}:{number}"
        try:
            record = fast_event(raw, origin)  # None: the checked path below
            if record is not None:
                if routed or part is None:
                    yield record
                else:
                    yield from part.filter(record, origin)
                return
            try:
                doc = loads(raw)
            except orjson.JSONDecodeError as exc:
                if not raw.strip():
                    return
                json_part = strip_time_prefix(raw)
                if json_part is not None:  # a CloudWatch export to S3: time, then Event
                    try:
                        doc = loads(json_part)
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        yield from self._emit(doc, origin, routed, raw)
                        return
                if routed or part is None or part.index == 0:
                    bad.add("invalid_json", origin, str(exc), raw)
                return
            # The common case, inline: one audit Event per line.
            if (routed or part is None) and type(doc) is dict \
                    and doc.get("kind") == "Event" and audit_version(doc):
                try:
                    record = decode_event(doc, origin)
                except BadRecord as exc:
                    bad.add(exc.reason, origin, str(exc), raw)
                    return
                yield record
                return
            yield from self._emit(doc, origin, routed, raw)
        except Exception as exc:  # a bug must not stop the run: count it, where it was
            if part is None or part.index == 0:
                bad.add(f"internal_error:{type(exc).__name__}", origin, str(exc)[:200], raw)

    def _yaml(self, stream: IO[bytes], name: str) -> Iterator[AuditRecord]:
        """YAML documents (Cloud Logging exports, audit events written as YAML)."""
        for index, doc in yaml_documents(stream, name, self.bad):
            try:
                yield from self._emit(doc, f"{name}#{index}")
            except Exception as exc:  # a bug must not stop the run
                self.bad.add(f"internal_error:{type(exc).__name__}", f"{name}#{index}",
                             str(exc)[:200])
