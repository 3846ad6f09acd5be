"""The dead-letter file: every record counted as bad (and every late one), where it was
and why, as JSON lines, for an operator to read or feed back.

One object per line::

    {"at": "audit.log:1234", "reason": "invalid_json", "detail": "...", "line": "..."}

- ``at``: where it was read, as the bad-record counts say it (``file:line``, a webhook
  batch item, ``index/_id``, a followed file's ``path:line``);
- ``reason`` and ``detail``: the reason it is counted under (``late`` for a record behind
  the reorder window) and what was wrong;
- ``line``: the text as read, when the source refused it (up to :data:`MAX_TEXT` characters,
  then ``"truncated": true``); a line that is JSON is written back with the shape kept and
  :func:`~lunettes.model.redact.redact_document` applied, any other text (it may not parse)
  through :func:`~lunettes.model.redact.redact_text` with its JSON escapes read first, so a
  quoted secret is seen;
- ``record``: for a record refused after it was decoded (a body field of the wrong type, a
  time too far ahead, a late record), the fields lunettes kept of it, redacted the same way.

The file is created 0600 and appended to, one write per entry (a restart adds to it; the
workers of ``replay --workers N`` share it). It is bounded: once it holds ``max_bytes``,
further entries are counted in :attr:`DeadLetter.dropped`, not written, logged once and
reported at the end of the run (:func:`report`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import IO, Any

import msgspec
import orjson

from lunettes.model.audit import AuditRecord
from lunettes.model.redact import redact_document, redact_text
from lunettes.model.times import format_time
from lunettes.private_files import open_private

__all__ = ["DEFAULT_MAX_MB", "MAX_TEXT", "DeadLetter", "record_fields", "report"]

DEFAULT_MAX_MB = 64.0
MAX_TEXT = 256 * 1024
"""Characters of a line written at most (a line refused for its size is still shown)."""

log = logging.getLogger(__name__)

_ESCAPE = re.compile(r'\\(["\\/nrt])')
_ESCAPED = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "r": "\r", "t": "\t"}


def _text(line: Any) -> tuple[str, bool]:
    """(the redacted text of a line (bytes) or of a decoded document, whether it was cut
    to :data:`MAX_TEXT`)."""
    if not isinstance(line, bytes):
        text = orjson.dumps(redact_document(line)).decode()
        return text[:MAX_TEXT], len(text) > MAX_TEXT
    cut = len(line) > MAX_TEXT
    if not cut:
        try:
            return orjson.dumps(redact_document(orjson.loads(line))).decode(), False
        except orjson.JSONDecodeError:
            pass  # not JSON (or nested deeper than orjson reads): as text
    text = line[:MAX_TEXT].decode("utf-8", "backslashreplace").rstrip("\r\n")
    return redact_text(_ESCAPE.sub(lambda m: _ESCAPED[m.group(1)], text)), cut


def record_fields(record: AuditRecord) -> dict[str, Any]:
    """What lunettes kept of a decoded record, as audit Event fields (bodies as held)."""
    out: dict[str, Any] = {
        "auditID": record.audit_id, "stage": record.stage, "verb": record.verb,
        "requestReceivedTimestamp": format_time(record.received_us),
        "objectRef": {"resource": record.resource, "subresource": record.subresource,
                      "namespace": record.namespace, "name": record.name,
                      "apiGroup": record.api_group, "uid": record.object_uid},
        "user": {"username": record.username}, "userAgent": record.user_agent,
        "responseStatus": {"code": record.code},
    }
    if record.request is not None:
        out["requestObject"] = record.request
    if record.response is not None:
        out["responseObject"] = record.response
    return out


class DeadLetter:
    """Appends dead-letter entries to ``path`` (created 0600) until it holds
    ``max_bytes``; thread-safe (sources count from their own threads)."""

    def __init__(self, path: str | Path, max_bytes: int = int(DEFAULT_MAX_MB * 2**20)) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.written = 0
        """Entries written by this run."""
        self.dropped = 0
        """Entries not written: the file had reached ``max_bytes``."""
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = open_private(self.path, "ab", buffering=0)

    def write(self, reason: str, at: str, detail: str = "", line: Any = None,
              record: AuditRecord | None = None) -> None:
        """Add one entry (``line``: the text as read, or the decoded document it was;
        ``record``: a decoded record)."""
        entry: dict[str, Any] = {"at": at, "reason": reason, "detail": redact_text(detail)}
        if line is not None:
            entry["line"], cut = _text(line)
            if cut:
                entry["truncated"] = True
        if record is not None:
            entry["record"] = redact_document(record_fields(record))
        try:
            data = orjson.dumps(entry) + b"\n"
        except TypeError:  # an integer beyond 64 bits, as msgspec decodes it
            data = msgspec.json.encode(entry) + b"\n"
        with self._lock:
            file = self._file  # appended unbuffered: one write per entry, so several
            # processes (replay --workers) can share the file and its cap
            if file is None or os.fstat(file.fileno()).st_size + len(data) > self.max_bytes:
                if not self.dropped and file is not None:
                    log.error("dead letter %s reached its cap of %g MiB: further bad "
                              "records are counted, not written", self.path,
                              self.max_bytes / 2**20)
                self.dropped += 1
                return
            file.write(data)
            self.written += 1

    def close(self) -> None:
        """Close the file; later entries are counted as dropped. Safe twice."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def report(path: str | Path, written: int, dropped: int, max_mb: float) -> str:
    """One line for the end of a run: what was written, and what the cap cut off."""
    text = f"dead letter {path}: {written} entr{'y' if written == 1 else 'ies'} written"
    if dropped:
        text += (f", {dropped} more not written: the file reached its cap of {max_mb:g} MiB "
                 f"(input.dead_letter_max_mb)")
    return text
