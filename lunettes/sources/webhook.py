"""WebhookSource: audit events POSTed by kube-apiserver's webhook backend (batch mode).

The API server (``--audit-webhook-config-file``, ``--audit-webhook-mode=batch``) POSTs
``audit.k8s.io/v1`` ``EventList`` documents. :meth:`WebhookSource.receive` checks one
request (size, gzip, bearer token, document) and, before answering 200, appends its events
to a local write-ahead spool (one event per line, fsync'ed): an acknowledged batch is on
disk, and the pipeline reads the spool as a followed file (:class:`FollowSource`, woken at
each append), so a restart resumes from the spool offset of its checkpoint. With a
``publisher`` instead of a spool (the ``nats`` key: :mod:`lunettes.sources.jetstream_publish`)
the batch is acknowledged once JetStream stored it, and this source yields nothing: the
``nats`` sources of other instances read the stream. The HTTP route is
:mod:`lunettes.api.webhook`; this module needs no web framework.

The spool rotates at ``spool_max_bytes`` (``webhook.jsonl`` renamed ``webhook.jsonl.<n>``,
n increasing: ``000001``...). A rotated spool is deleted only once nothing needs it: with
checkpoints, once a written checkpoint lies in a newer spool (the pipeline asks
:meth:`WebhookSource.checkpoint` for the position it is about to write; when it asks
again, that one is written; a run that finds no checkpoint, the last one killed before
its first, reads every spool kept from the oldest); without, once the reader has read it
to its end (a restart without checkpoints reads the current spool again, so it deletes
the rotated ones left behind and counts them in ``bad`` as ``webhook_spool_dropped``).
The spools together stay under ``spool_limit_bytes``: a batch that would pass it is
refused with 503 and ``Retry-After`` instead of dropping spooled data, and the source says
``stalled`` (``/readyz``, ``lunettes_source_state``) until the spools read (and
checkpointed) may go and the refused batch fits again: its state is checked each time it
is asked, so readiness comes back without waiting for a batch a Service would not route.

Answers: 200 accepted; 400 not an EventList (counted in ``bad`` as
``webhook_invalid_document``); 401 bad or missing token; 413 body (or its gzip content)
over ``max_body_bytes``; 429 with ``Retry-After`` while more than ``queue_events`` events
wait to be read (the API server retries with backoff); 503 with ``Retry-After`` while the
spool is full. Events inside a valid EventList that cannot be used are counted in ``bad``
and the rest accepted.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from lunettes.config.errors import Section
from lunettes.model.audit import TICK_STAGE, AuditRecord
from lunettes.registry import BuildContext
from lunettes.sources.decode import AUDIT_API_VERSIONS, decode_event
from lunettes.sources.errors import BadRecord, BadRecords
from lunettes.sources.follow import FollowSource
from lunettes.sources.jsonline import loads
from lunettes.sources.peek import Peek

__all__ = ["Answer", "WebhookSource"]

SPOOL = "webhook.jsonl"


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class Publisher(Protocol):
    """Stores acknowledged batches elsewhere than in the spool (JetStream): ``start``
    connects in the background, ``state`` and ``error`` say whether it can store (see
    :data:`lunettes.sources.base.STATES`), ``stats["failures"]`` counts the batches it
    could not store."""

    stats: dict[str, int]

    @property
    def state(self) -> str: ...

    @property
    def error(self) -> str: ...

    def start(self) -> None: ...

    def publish(self, records: Sequence[AuditRecord], lines: Sequence[bytes]) -> Answer: ...

    def close(self) -> None: ...


class WebhookSource:
    """Receives EventList batches (:meth:`receive`, called by the HTTP route) and yields
    their records, in the order acknowledged, from the spool in ``spool_dir``."""

    live = True

    def __init__(self, spool_dir: str | Path | None, *, name: str = "webhook", path: str =
                 "/audit/webhook", token: str = "", max_body_bytes: int = 32 << 20,
                 queue_events: int = 50_000, retry_after_s: int = 1, fsync: bool = True,
                 spool_max_bytes: int = 256 << 20, spool_limit_bytes: int = 4 << 30,
                 checkpointing: bool = False, bad: BadRecords | None = None,
                 resume: dict[str, Any] | None = None, publisher: Publisher | None = None
                 ) -> None:
        self.name = name
        self.path = path
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.queue_events = queue_events
        self.retry_after_s = retry_after_s
        self.fsync = fsync
        self.spool_max_bytes = spool_max_bytes
        self.spool_limit_bytes = spool_limit_bytes
        self.checkpointing = checkpointing
        self.bad = bad if bad is not None else BadRecords()
        self._error = ""
        self._lock = threading.Lock()
        self._pending = 0
        self.stats = {"batches": 0, "events": 0, "refused": 0, "spool_full": 0,
                      "spools_deleted": 0}
        self._written: tuple[int, int] | None = None
        """The spool file of the last checkpoint written: older ones are not needed."""
        self._asked: tuple[int, int] | None = None
        self._full = False
        self._refused_bytes = 0  # the batch the full spool refused last
        self._spool_bytes = 0
        self._wake = threading.Event()
        self.publisher = publisher
        self._closed = threading.Event()
        self._follow: FollowSource | None = None
        if spool_dir is not None:
            self.spool = Path(spool_dir) / SPOOL
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            self.spool.touch()
            resume = dict(resume or {})
            lane = f"{name}:{self.spool}"
            if checkpointing and lane not in resume:
                resume.update(self._from_oldest_spool(lane))
            self._follow = FollowSource([str(self.spool)], name=name, bad=self.bad,
                                        resume=resume, wake=self._wake, poll_s=1.0,
                                        heartbeat=True)
            self._written = _identity(resume.get(self._follow.lanes[0].key))
            self._spool_bytes = self.spool.stat().st_size
            if not checkpointing:  # no reader reads them: a restart reads the spool anew
                for old in self._rotated():
                    self.bad.add("webhook_spool_dropped", str(old),
                                 f"{old.stat().st_size} bytes spooled by a run that wrote "
                                 f"no checkpoint: read by it, or lost (use --checkpoint)")
                    old.unlink()
            self._prune()
        elif publisher is None:
            raise ValueError("a webhook source needs a spool directory or a publisher")

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> WebhookSource:
        """``spool_dir`` (required: where acknowledged batches are kept), ``path``
        (/audit/webhook), ``token_file`` (the bearer token the API server sends; without
        it, only the server's TLS client-certificate check guards the receiver),
        ``max_body_bytes`` (32 MiB), ``queue_events`` (50000), ``retry_after_s`` (1),
        ``fsync`` (true), ``spool_max_bytes`` (256 MiB, then the spool rotates) and
        ``spool_limit_bytes`` (4 GiB: the spools together; past it, batches are refused
        until rotated spools may go). ``nats`` (the stream's settings, see
        :class:`~lunettes.sources.jetstream_link.StreamSettings`) publishes the batches
        to JetStream instead of a spool."""
        jetstream = section.sub("nats") if "nats" in section.data else None
        spool = None
        if jetstream is None:
            spool = section.require("spool_dir", str)
        elif section.get("spool_dir", None, str) is not None:
            section.problem("spool_dir", "not used with nats (JetStream keeps the batches)")
        path = section.get("path", "/audit/webhook", str)
        token_file = section.get("token_file", None, str)
        numbers = {k: section.get(k, d, int) for k, d in (
            ("max_body_bytes", 32 << 20), ("queue_events", 50_000), ("retry_after_s", 1),
            ("spool_max_bytes", 256 << 20), ("spool_limit_bytes", 4 << 30))}
        fsync = section.get("fsync", True, bool)
        section.check_unknown()
        for key_name, number in numbers.items():
            if number < 1:
                section.problem(key_name, "must be positive")
        if numbers["spool_limit_bytes"] <= numbers["spool_max_bytes"]:
            section.problem("spool_limit_bytes", "must be more than spool_max_bytes (the "
                                                 "current spool and the rotated ones)")
        token = ""
        if token_file:
            try:
                token = (context.config_dir / token_file).read_text().strip()
            except OSError as exc:
                section.problem("token_file", f"cannot read it: {exc.strerror or exc}")
        if not path.startswith("/"):
            section.problem("path", "must start with /")
        publisher = _publisher(section, jetstream, context, numbers) if jetstream else None
        if publisher is not None:
            return cls(None, name=key, path=path, token=token, bad=context.bad,
                       publisher=publisher, **numbers)
        return cls(context.config_dir / (spool or "."), name=key, path=path, token=token,
                   fsync=fsync, bad=context.bad, resume=context.resume,
                   checkpointing=context.checkpointing, **numbers)

    # -- the Source contract --------------------------------------------------------------
    @property
    def keep_lines(self) -> bool:
        """Records carry their spooled line in ``raw`` (set by the pipeline when a
        processor reads lines: the API server load analysis), unless a
        :attr:`line_reader` reads them."""
        return self._follow is not None and self._follow.keep_lines

    @keep_lines.setter
    def keep_lines(self, keep: bool) -> None:
        if self._follow is not None:
            self._follow.keep_lines = keep

    @property
    def line_reader(self) -> Callable[[bytes, str], Peek | None] | None:
        """Reads each spooled line (see :attr:`FollowSource.line_reader
        <lunettes.sources.follow.FollowSource.line_reader>`)."""
        return None if self._follow is None else self._follow.line_reader

    @line_reader.setter
    def line_reader(self, reader: Callable[[bytes, str], Peek | None] | None) -> None:
        if self._follow is not None:
            self._follow.line_reader = reader

    @property
    def state(self) -> str:
        if self.publisher is not None:
            return "done" if self._closed.is_set() else self.publisher.state
        assert self._follow is not None
        if self._full:
            self._make_room()
        return "stalled" if self._full else self._follow.state

    def _make_room(self) -> None:
        """While the spool is full: prune, and leave the full state once the refused batch
        fits, without waiting for it to come again (a Service routes no batch to a pod
        whose /readyz says stalled)."""
        with self._lock:
            self._prune()
            if self._spooled_bytes() + self._refused_bytes <= self.spool_limit_bytes:
                self._full, self._error = False, ""

    @property
    def error(self) -> str:
        return self.publisher.error if self.publisher is not None else self._error

    @property
    def publish_failures(self) -> int | None:
        """Batches the publisher could not store (None without one)."""
        return self.publisher.stats["failures"] if self.publisher is not None else None

    def __iter__(self) -> Iterator[AuditRecord]:
        if self._follow is None:  # the stream is read by the nats sources
            if self.publisher is not None:
                self.publisher.start()
            self._closed.wait()
            return
        for record in self._follow:
            if record.stage is not TICK_STAGE:  # (a heartbeat is no event)
                with self._lock:  # (records re-read after a restart were never counted)
                    self._pending = max(0, self._pending - 1)
            yield record

    def checkpoint(self, lane: str, n: int) -> dict[str, Any] | None:
        """The spool position of record ``n``; the pipeline asks for it to write it, so
        the position it asked for before is written: spools older than it go."""
        state = self._follow.checkpoint(lane, n) if self._follow is not None else None
        if state is not None:
            with self._lock:
                self._written = self._asked or self._written
                self._asked = _identity(state)
                self._prune()
        return state

    def close(self) -> None:
        self._closed.set()
        if self._follow is not None:
            self._follow.close()
        if self.publisher is not None:
            self.publisher.close()

    # -- receiving --------------------------------------------------------------------------
    def authorized(self, authorization: str) -> bool:
        """Whether an Authorization header carries the token (always, without a token)."""
        if not self.token:
            return True
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode())

    def receive(self, body: bytes, encoding: str = "", authorization: str = "") -> Answer:
        """Check one POSTed batch and spool it; the answer for the API server."""
        if not self.authorized(authorization):
            return self.unauthorized()
        if len(body) > self.max_body_bytes:
            return self.too_large()
        if encoding.strip().lower() == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            try:
                body = inflate.decompress(body, self.max_body_bytes + 1)
            except zlib.error as exc:
                return self._invalid(f"gzip: {exc}")
            if len(body) > self.max_body_bytes or inflate.unconsumed_tail:
                return self.too_large()
        elif encoding.strip().lower() not in ("", "identity"):
            return Answer(415, {"message": f"Content-Encoding {encoding!r} is not supported"})
        try:
            doc = loads(body)
        except orjson.JSONDecodeError as exc:
            return self._invalid(f"not JSON: {exc}")
        if not (isinstance(doc, dict) and doc.get("kind") == "EventList"
                and doc.get("apiVersion") in AUDIT_API_VERSIONS
                and isinstance(doc.get("items"), list)):
            return self._invalid("not an audit.k8s.io EventList")
        lines, records = [], []
        for index, item in enumerate(doc["items"]):
            try:
                if not isinstance(item, dict):
                    raise BadRecord("not_an_event", type(item).__name__)
                records.append(decode_event({"apiVersion": doc["apiVersion"], **item}, ""))
            except BadRecord as exc:
                self.bad.add(exc.reason, f"{self.name}: batch item {index}", str(exc),
                             item)
                continue
            lines.append(orjson.dumps({"kind": "Event", "apiVersion": doc["apiVersion"],
                                       **item}) + b"\n")
        if self.publisher is not None:
            answer = self.publisher.publish(records, lines)
            with self._lock:
                self._count(answer.status == 200, len(lines))
            return answer
        data = b"".join(lines)
        with self._lock:
            if self._pending and self._pending + len(lines) > self.queue_events:
                self.stats["refused"] += 1
                return Answer(429, {"message": f"{self._pending} events wait to be read"},
                              {"Retry-After": str(self.retry_after_s)})
            if self._spooled_bytes() + len(data) > self.spool_limit_bytes:
                self._prune()
                if self._spooled_bytes() + len(data) > self.spool_limit_bytes:
                    return self._spool_full(len(data))
            if self._full:
                self._full, self._error = False, ""
            self._append(data)
            self._pending += len(lines)
            self._count(True, len(lines))
        self._wake.set()
        return Answer(200, {})

    def _count(self, stored: bool, events: int) -> None:
        if stored:
            self.stats["batches"] += 1
            self.stats["events"] += events
        else:
            self.stats["refused"] += 1

    def _append(self, data: bytes) -> None:
        """Append to the spool (fsync'ed when configured); rotate it once large."""
        with open(self.spool, "ab") as out:
            out.write(data)
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())
            self._spool_bytes = out.tell()
        if self._spool_bytes >= self.spool_max_bytes:
            rotated = self._rotated()
            number = int(rotated[-1].name.rsplit(".", 1)[1]) + 1 if rotated else 1
            self.spool.rename(self.spool.with_name(f"{SPOOL}.{number:06d}"))
            self.spool.touch()
            self._spool_bytes = 0
            self._prune()

    def _rotated(self) -> list[Path]:
        """The rotated spools, oldest first."""
        numbered = [(int(p.name.rsplit(".", 1)[1]), p)
                    for p in self.spool.parent.glob(f"{SPOOL}.*")
                    if p.name.rsplit(".", 1)[1].isdigit()]
        return [p for _, p in sorted(numbered)]

    def _from_oldest_spool(self, lane: str) -> dict[str, Any]:
        """Where a run that writes checkpoints starts without one (the last run was
        killed before its first): the oldest spool kept, read from its start."""
        for path in self._rotated():
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                return {lane: {"path": str(path), "device": st.st_dev, "inode": st.st_ino,
                               "offset": 0}}
        return {}

    def _spooled_bytes(self) -> int:
        total = self._spool_bytes
        for path in self._rotated():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def _prune(self) -> None:
        """Delete the rotated spools nothing needs any more (see the module docstring)."""
        read = self._follow.read_to_end() if self._follow is not None else set()
        for path in self._rotated():
            try:
                identity = _identity(path.stat())
            except FileNotFoundError:
                continue
            if self.checkpointing:
                if identity == self._written or self._written is None:
                    return  # the written checkpoint's spool, and every newer one, stay
            elif identity not in read:
                return
            path.unlink()
            self.stats["spools_deleted"] += 1

    def _spool_full(self, refused_bytes: int) -> Answer:
        self._full, self._refused_bytes = True, refused_bytes
        self.stats["spool_full"] += 1
        self._error = (f"spool full: {self._spooled_bytes()} bytes in {self.spool.parent} "
                       f"(spool_limit_bytes {self.spool_limit_bytes}) until rotated spools "
                       f"may go")
        return Answer(503, {"message": self._error},
                      {"Retry-After": str(self.retry_after_s)})

    @staticmethod
    def unauthorized() -> Answer:
        return Answer(401, {"message": "missing or wrong bearer token"},
                      {"WWW-Authenticate": "Bearer"})

    def too_large(self) -> Answer:
        self.stats["refused"] += 1
        return Answer(413, {"message": f"the batch is over {self.max_body_bytes} bytes; "
                                       f"lower --audit-webhook-batch-max-size"})

    def _invalid(self, why: str) -> Answer:
        self.bad.add("webhook_invalid_document", self.name, why)
        return Answer(400, {"message": why})


def _identity(state: Any) -> tuple[int, int] | None:
    """(device, inode) of a checkpoint's position or of a stat result."""
    if isinstance(state, os.stat_result):
        return state.st_dev, state.st_ino
    if isinstance(state, dict) and "device" in state and "inode" in state:
        return int(state["device"]), int(state["inode"])
    return None


def _publisher(section: Section, jetstream: Section, context: BuildContext,
               numbers: dict[str, int]) -> Publisher | None:
    """The JetStream publisher of the ``nats`` key; None (a problem noted) without the
    ``nats`` extra."""
    try:
        from lunettes.sources.jetstream_publish import JetStreamPublisher
    except ImportError as exc:
        section.problem("nats", f"needs an optional dependency ({exc.name}); install it "
                                f"with: pip install 'lunettes[nats]'")
        return None
    return JetStreamPublisher.from_config(jetstream, context.config_dir,
                                          retry_after_s=numbers["retry_after_s"],
                                          max_pending=numbers["queue_events"])
