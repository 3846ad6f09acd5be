"""The webhook receiver's JetStream mode: each acknowledged batch is in the stream.

:meth:`JetStreamPublisher.publish` sends every event of the batch to its subject, then
the batch's clock message (see :mod:`lunettes.sources.jetstream_link`), and answers 200
only once JetStream acknowledged storing all of them. If the stream cannot be
reached, or does not acknowledge within ``timeout_s``, the answer is 503 with
``Retry-After`` (the API server sends the batch again; what was stored already is dropped
by its message id); 429 while more than ``max_pending`` events wait for their
acknowledgement.

Once the webhook source starts (:meth:`JetStreamPublisher.start`), the publisher connects
and keeps the connection: ``state`` is ``starting`` until it first connects, ``stalled``
while the server cannot be reached (``/readyz`` answers 503, the receiver leaves its
Service's endpoints), ``following`` once connected. ``stats["failures"]`` counts the
batches JetStream did not store (``lunettes_nats_publish_failures_total``): the server
unreachable, no acknowledgement within ``timeout_s``, or a negative one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path

import nats.errors
import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from lunettes.config.errors import Section
from lunettes.model.audit import FOLDED_VERBS, AuditRecord
from lunettes.sources.jetstream_link import (
    CLOCK,
    EventLoop,
    StreamSettings,
    connect,
    ensure_stream,
)
from lunettes.sources.partition import owner, record_key
from lunettes.sources.webhook import Answer

__all__ = ["JetStreamPublisher"]

_FINAL = ("ResponseComplete", "Panic")


class JetStreamPublisher:
    """Publishes webhook batches to the stream of ``settings``; thread-safe."""

    def __init__(self, settings: StreamSettings, *, retry_after_s: int = 1,
                 max_pending: int = 50_000) -> None:
        self.settings = settings
        self.retry_after_s = retry_after_s
        self.max_pending = max_pending
        self.failure = ""
        """Why the last batch was not stored ("" once one is)."""
        self.stats = {"published": 0, "duplicates": 0, "failures": 0}
        self._loop = EventLoop("lunettes-jetstream-publish")
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = threading.Lock()
        self._pending = 0
        self._number = 0
        self._connecting = asyncio.Lock()
        self._started = False
        self._closed = False

    @classmethod
    def from_config(cls, section: Section, config_dir: Path, *, retry_after_s: int = 1,
                    max_pending: int = 50_000) -> JetStreamPublisher:
        """The stream's settings (:meth:`StreamSettings.from_config`)."""
        settings = StreamSettings.from_config(section, config_dir)
        section.check_unknown()
        return cls(settings, retry_after_s=retry_after_s, max_pending=max_pending)

    def partition(self, record: AuditRecord) -> int | None:
        """The Pod partition of one event; None for the API-server subject."""
        if record.verb not in FOLDED_VERBS.get(record.resource, ()):
            return None
        self._number += 1
        return owner(record_key(record), self._number, self.settings.partitions)

    def publish(self, records: Sequence[AuditRecord], lines: Sequence[bytes]) -> Answer:
        """Store one batch (``lines[i]`` is the JSON line of ``records[i]``); the answer
        for the API server."""
        with self._lock:
            if self._pending and self._pending + len(lines) > self.max_pending:
                return self._retry(429, f"{self._pending} events wait for JetStream")
            self._pending += len(lines)
            partitions = [self.partition(record) for record in records]
        try:
            self._loop.run(self._publish(records, lines, partitions),
                           self.settings.timeout_s + 1)
        except (nats.errors.Error, OSError, ValueError) as exc:  # TimeoutError is an OSError
            self.stats["failures"] += 1
            self.failure = f"{self.settings.stream}: {type(exc).__name__}: {exc}"
            return self._retry(503, f"JetStream did not store the batch ({self.failure})")
        finally:
            with self._lock:
                self._pending -= len(lines)
        self.failure = ""
        return Answer(200, {})

    @property
    def state(self) -> str:
        """``starting``, ``stalled`` (the server cannot be reached) or ``following``."""
        if self._connected():
            return "following"
        return "stalled" if self._started or self.failure else "starting"

    @property
    def error(self) -> str:
        if self._started and not self._connected():
            return "; ".join(filter(None, [f"{self.settings.servers[0]}: not connected",
                                           self.failure]))
        return self.failure

    def _connected(self) -> bool:
        client = self._client
        return client is not None and client.is_connected

    def start(self) -> None:
        """Connect in the background, retrying every ``retry_after_s`` until it can."""
        self._started = True
        self._loop.submit(self._keep_connecting())

    async def _keep_connecting(self) -> None:
        while self._js is None and not self._closed:
            try:
                await self._stream()
            except (nats.errors.Error, OSError, ValueError) as exc:
                self.failure = f"{self.settings.servers[0]}: {type(exc).__name__}: {exc}"
                await asyncio.sleep(self.retry_after_s)

    def close(self) -> None:
        """Close the connection and the loop (safe twice)."""
        self._closed = True
        client = self._client
        if client is not None and not client.is_closed:
            with contextlib.suppress(nats.errors.Error, OSError):
                self._loop.run(client.close(), self.settings.timeout_s)
        self._loop.stop()

    def _retry(self, status: int, message: str) -> Answer:
        return Answer(status, {"message": message}, {"Retry-After": str(self.retry_after_s)})

    async def _stream(self) -> JetStreamContext:
        async with self._connecting:  # (one connection, whoever asks first)
            if self._js is None:
                client = await connect(self.settings)
                try:
                    js = client.jetstream(timeout=self.settings.timeout_s)
                    await ensure_stream(js, self.settings)
                except BaseException:
                    await client.close()
                    raise
                self._client, self._js = client, js
            return self._js

    async def _publish(self, records: Sequence[AuditRecord], lines: Sequence[bytes],
                       partitions: Sequence[int | None]) -> None:
        js = await self._stream()
        settings = self.settings
        messages = []
        for record, line, k in zip(records, lines, partitions, strict=True):
            headers = {"Nats-Msg-Id": f"{record.audit_id}/{record.stage}"} \
                if record.audit_id else None
            subject = settings.apiserver_subject if k is None else settings.pod_subject(k)
            messages.append((subject, line, headers))
        clock = clock_message(records, partitions)
        if clock is not None:
            messages.append((settings.clock_subject, *clock))
        pending = []
        try:
            for subject, payload, headers in messages:  # in order, acknowledged together
                pending.append(await js.publish_async(subject, payload, headers=headers))
            acks = await asyncio.wait_for(asyncio.gather(*pending), settings.timeout_s)
        finally:
            for future in pending:
                future.cancel()  # (no-op once done) frees the client's slots
        duplicates = sum(1 for ack in acks if ack.duplicate)
        self.stats["published"] += len(acks) - duplicates
        self.stats["duplicates"] += duplicates


def clock_message(records: Sequence[AuditRecord], partitions: Sequence[int | None]
                  ) -> tuple[bytes, dict[str, str]] | None:
    """The clock message of a batch: the time of every event that moves the audit clock
    as a file replay sees it (final stages, and events about Pods), in the batch's order;
    None when none does."""
    times = [r.received_us for r, k in zip(records, partitions, strict=True)
             if k is not None or r.stage in _FINAL]
    if not times:
        return None
    headers = {CLOCK: str(times[0])}
    first = next((r for r in records if r.audit_id), None)
    if first is not None:  # a batch sent again is stored once
        headers["Nats-Msg-Id"] = f"{first.audit_id}/{first.stage}/clock"
    return orjson.dumps([t - times[0] for t in times]), headers
