"""JetStreamSource (type ``nats``): the Pod partitions of the audit stream that this
instance owns, read through durable consumers and merged by audit time.

The webhook receivers publish (see :mod:`lunettes.sources.jetstream_link`); N lunettes
instances each read their own ``consume`` partitions, so every Pod is followed by exactly
one of them. Partition ``k`` is read through the durable pull consumer
``<durable>-<k>`` (filtered on ``<prefix>.pods.<k>``, acknowledging all up to a message),
one lane per partition (``<name>:<subject>``, positions are stream sequences); the lanes
are merged by audit time as several files are (:func:`lunettes.sources.base.merged`), and
the pipeline's reorder window absorbs the rest, as on the file path.

Where a restart resumes: the pipeline's checkpoint holds each lane's stream sequence
(:mod:`lunettes.processors.checkpoint`: the oldest record of a Pod in flight), and the
consumer is acknowledged up to the sequence of the checkpoint *before* the current one,
which is known to be written. At start each consumer is reset (nats-server 2.14's
consumer reset) to the checkpoint's sequence, or, for a partition the checkpoint does not
hold (it moved from another instance), to just after its acknowledged floor; messages
delivered to a process that died are so read again at once, not after ``ack_wait_s``.
A pipeline that writes checkpoints acknowledges nothing before its first checkpoint is
written (a kill before it reads everything unacknowledged again); one that writes none
acknowledges as it reads.

A lane is ``following`` only once JetStream holds nothing more for its consumer and every
message delivered was read (an empty fetch alone does not tell: after a reconnect, or
while a restarted server recovers, a fetch finds nothing though messages wait). Until
then the merge waits for it, so no other lane (the clock above all) runs ahead of its
records and makes them late; a lane whose fetches fail keeps it waiting too. A reconnect,
a failed fetch or a gap in the delivery sequence (each delivery must follow the last
one's consumer sequence) resets the consumer to its acknowledged floor and reads it
through a new subscription (deliveries to the old one are dropped), and what was read
already is dropped by its stream sequence. The source says
``stalled`` (``/readyz`` 503, ``lunettes_source_state``) at once while the server cannot
be reached, and after ``stall_s`` while a partition cannot be read.

Every instance also reads the clock subject (one clock message per batch, through its
own durable consumer ``<durable>-clock-<its first partition>``): a tick for the time of
every event of the batch that moves the audit clock, so the merge and the reorder window
see the clock move as in a file replay of the whole stream, whichever partitions the
instance reads (as ``--workers`` ticks the other workers' records).

An instance running the API server load analysis (``--apiserver-load``: the pipeline sets
``keep_lines``) also reads the API-server subject (``<prefix>.apiserver``, the records about
no Pod) through the durable consumer ``<durable>-apiserver``, and the analysis counts every
message read: one such instance reading every partition counts every request. (Give it
its own ``durable``: instances sharing a consumer share its messages.)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord, tick
from lunettes.registry import BuildContext
from lunettes.sources.base import merged
from lunettes.sources.decode import decode_document
from lunettes.sources.errors import BadRecord, BadRecords
from lunettes.sources.jetstream_link import (
    CLOCK,
    EventLoop,
    NoAnswer,
    StreamSettings,
    connect,
    ensure_stream,
)
from lunettes.sources.jsonline import loads

__all__ = ["JetStreamSource"]

ACK_REPLIES = 10_000
"""Reply subjects kept per partition for acknowledgements (one per fetch; acknowledging
one acknowledges all before it, so the oldest may be forgotten)."""


class JetStreamSource:
    """Audit records of the ``partitions`` of the stream of ``settings``; see the module
    docstring."""

    live = True

    def __init__(self, settings: StreamSettings, partitions: Sequence[int] | None = None,
                 *, name: str = "nats", durable: str = "lunettes", fetch_batch: int = 500,
                 poll_s: float = 1.0, ack_wait_s: float = 7200.0, stall_s: float = 30.0,
                 checkpointing: bool = False, bad: BadRecords | None = None,
                 resume: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.name = name
        self.durable = durable
        self.fetch_batch = fetch_batch
        self.poll_s = poll_s
        self.ack_wait_s = ack_wait_s
        self.stall_s = stall_s
        self.bad = bad if bad is not None else BadRecords()
        self.resume = resume or {}
        wanted = sorted(set(range(settings.partitions) if partitions is None
                            else partitions))
        lanes = [_Lane(self, settings.pod_subject(k), f"{durable}-{k}") for k in wanted]
        lanes.append(_Lane(self, settings.clock_subject,  # one per instance
                           f"{durable}-clock-{wanted[0] if wanted else 0}"))
        self.readers = {lane.name: lane for lane in lanes}
        self._safe: dict[str, int] = {}
        self.acknowledge_at_checkpoints = checkpointing or any(
            lane in self.resume for lane in self.readers)
        """Acknowledge JetStream only up to a written checkpoint (else as read)."""
        self._stop = threading.Event()
        self._loop: EventLoop | None = None
        self._client: Client | None = None
        self._state, self._error = "starting", ""
        self.keep_lines = False
        """Set by the pipeline for the API server load analysis: records carry their
        message (one audit line) in ``raw``, and the API-server subject is read too."""

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext
                    ) -> JetStreamSource:
        """The stream's settings (:meth:`StreamSettings.from_config`: ``servers``,
        ``partitions``...), ``consume`` (the partitions this instance reads; default all),
        ``durable`` (consumer name prefix, "lunettes"), ``fetch_batch`` (500), ``poll_s``
        (1), ``ack_wait_s`` (7200: more than a Pod may stay in flight), ``stall_s`` (30: how
        long fetches may fail while connected before the source says ``stalled``)."""
        settings = StreamSettings.from_config(section, context.config_dir)
        consume = section.get("consume", None, list)
        durable = section.get("durable", "lunettes", str)
        fetch_batch = section.get("fetch_batch", 500, int)
        numbers = {k: float(section.get(k, d, (int, float))) for k, d in (
            ("poll_s", 1.0), ("ack_wait_s", 7200.0), ("stall_s", 30.0))}
        section.check_unknown()
        if consume is not None and not (consume and all(
                type(k) is int and 0 <= k < settings.partitions for k in consume)):
            section.problem("consume", f"one or more partition numbers from 0 to "
                                       f"{settings.partitions - 1}, got {consume}")
            consume = None
        if not durable or any(c in durable for c in " .*>"):
            section.problem("durable", f"not a consumer name: {durable!r}")
        if fetch_batch < 1:
            section.problem("fetch_batch", f"must be at least 1, got {fetch_batch}")
        for name, value in numbers.items():
            if value <= 0:
                section.problem(name, f"must be positive, got {value}")
        return cls(settings, consume, name=key, durable=durable,
                   fetch_batch=max(1, fetch_batch), checkpointing=context.checkpointing,
                   bad=context.bad, resume=context.resume, **numbers)

    # -- the Source contract --------------------------------------------------------------
    @property
    def state(self) -> str:
        """``stalled`` while the server cannot be reached (at once) or a partition
        cannot be read (after ``stall_s``); ``following`` once every lane is caught up."""
        if self._state != "reading":  # starting, stalled (not connected yet) or done
            return self._state
        if self._disconnected() or self._failing_lane():
            return "stalled"
        states = {reader.state for reader in self.readers.values()}
        return next((state for state in ("starting", "reading") if state in states),
                    "following")

    @property
    def error(self) -> str:
        if self._error or self._state != "reading":
            return self._error
        if self._disconnected():
            return f"{self.settings.servers[0]}: disconnected, reconnecting"
        lane = self._failing_lane()
        return lane.error if lane is not None else ""

    def __iter__(self) -> Iterator[AuditRecord]:
        if self.keep_lines:  # the analysis counts every request: the other records too
            lane = _Lane(self, self.settings.apiserver_subject, f"{self.durable}-apiserver")
            self.readers[lane.name] = lane
            self.acknowledge_at_checkpoints |= lane.name in self.resume
        self._loop = EventLoop(f"lunettes-{self.name}")
        try:
            if self._connect():
                yield from merged(list(self.readers.values()))
        finally:
            self._state = "done"
            client, self._client = self._client, None
            if client is not None:
                try:
                    self._loop.run(client.close(), self.settings.timeout_s)
                except (nats.errors.Error, OSError) as exc:
                    self._error = f"closing: {exc}"
            self._loop.stop()

    def checkpoint(self, lane: str, n: int) -> dict[str, Any] | None:
        """The stream sequence ``n``; the consumer is acknowledged up to the previous
        checkpoint's sequence of the lane (that checkpoint is written)."""
        reader = self.readers.get(lane)
        if reader is None:
            return None
        self.acknowledge_at_checkpoints = True
        safe = self._safe.get(lane)
        if safe is not None:
            reader.acknowledge_before(safe)
        self._safe[lane] = n
        return {"stream_seq": n}

    def close(self) -> None:
        self._stop.set()

    # -- reading ------------------------------------------------------------------------
    def _disconnected(self) -> bool:
        client = self._client
        return client is None or not client.is_connected

    def _failing_lane(self) -> _Lane | None:
        """A lane whose fetches have failed for ``stall_s`` or more, if any."""
        now = time.monotonic()
        return next((lane for lane in self.readers.values() if lane.failing_since
                     is not None and now - lane.failing_since >= self.stall_s), None)

    def _connect(self) -> bool:
        """Connect and set the consumers up, retrying while the server cannot be reached
        (``stalled`` meanwhile); False when closed first."""
        assert self._loop is not None
        while not self._stop.is_set():
            try:
                self._loop.run(self._subscribe(), 3 * self.settings.timeout_s)
                self._state, self._error = "reading", ""
                return True
            except (nats.errors.Error, OSError) as exc:
                self._error = f"{self.settings.servers[0]}: {type(exc).__name__}: {exc}"
                self._state = "stalled"
                self._stop.wait(self.poll_s)
        return False

    async def _subscribe(self) -> None:
        if self._client is None:
            self._client = await connect(self.settings, reconnected=self._reconnected)
        js = self._client.jetstream(timeout=self.settings.timeout_s)
        await ensure_stream(js, self.settings)
        for lane, reader in self.readers.items():
            consumer = reader.consumer
            try:
                await js.consumer_info(self.settings.stream, consumer)
            except NotFoundError:
                await js.add_consumer(self.settings.stream, ConsumerConfig(
                    durable_name=consumer, filter_subject=reader.subject,
                    deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.ALL,
                    ack_wait=self.ack_wait_s, max_ack_pending=-1))
            saved = self.resume.get(lane)
            seq = int(saved["stream_seq"]) if isinstance(saved, dict) else None
            await js.reset_consumer(self.settings.stream, consumer, seq=seq)
            reader.subscription = await js.pull_subscribe_bind(
                durable=consumer, stream=self.settings.stream)


    async def _reconnected(self) -> None:
        for lane in self.readers.values():
            lane.resync, lane.caught_up = True, False


class _Lane:
    """One subject (a Pod partition, or the clock) read through its durable consumer, as
    a lane of the merge (a Source of its own)."""

    live = True

    def __init__(self, owner: JetStreamSource, subject: str, consumer: str) -> None:
        self.owner = owner
        self.subject = subject
        self.consumer = consumer
        self.name = f"{owner.name}:{subject}"
        self.bad = owner.bad
        self.state, self.error = "starting", ""
        self.subscription: JetStreamContext.PullSubscription | None = None
        self.replies: deque[tuple[int, str]] = deque(maxlen=ACK_REPLIES)
        self.last = 0
        self.delivered = 0
        """The consumer sequence of the last message delivered (a gap: some were lost)."""
        self.resync = False
        """Set on a reconnect: the consumer is reset before the next fetch."""
        self.caught_up = False
        """JetStream holds nothing more for this consumer, and all it delivered was read."""
        self.failing_since: float | None = None

    def checkpoint(self, lane: str, n: int) -> dict[str, Any] | None:
        return self.owner.checkpoint(lane, n)

    def close(self) -> None:
        self.owner.close()

    def __iter__(self) -> Iterator[AuditRecord]:
        owner = self.owner
        self.state = "reading"
        while not owner._stop.is_set():
            try:
                if self.resync:
                    self._redeliver()
                messages = self._fetch()
                if not messages and not self.caught_up:
                    self.caught_up = self._read_all_delivered()
            except (nats.errors.Error, OSError) as exc:  # NoAnswer included
                self._failing(exc)
                continue
            self.failing_since, self.error = None, ""
            if not messages:  # nothing new
                self.state = "following" if self.caught_up else "reading"
                yield tick(0)  # the pipeline's chance to checkpoint while idle
                continue
            if any(m.metadata.sequence.consumer != self.delivered + 1 + i
                   for i, m in enumerate(messages)):
                self.resync = True  # deliveries were lost, or made to a stale fetch
                continue
            self.delivered = messages[-1].metadata.sequence.consumer
            self.caught_up = not messages[-1].metadata.num_pending
            fresh = self._unread(messages)
            if fresh:  # (else only redeliveries of what was read)
                self.replies.append((fresh[0].metadata.sequence.stream, fresh[0].reply))
                if not owner.acknowledge_at_checkpoints:
                    self.acknowledge_before(self.last + 1)
                self.state = "reading"  # the merge waits for each of them
                for message in fresh:
                    yield from self._records(message)
            self.state = "following" if self.caught_up else "reading"
        self.state = "done"

    def _unread(self, messages: list[Msg]) -> list[Msg]:
        """The messages past the last one read (a reset delivers again what was read)."""
        fresh = []
        for message in messages:
            seq = message.metadata.sequence.stream
            if seq > self.last:
                fresh.append(message)
                self.last = seq
        return fresh

    def _fetch(self) -> list[Msg]:
        """The next messages; none when the fetch found nothing new within ``poll_s``."""
        owner, loop = self.owner, self.owner._loop
        assert loop is not None and self.subscription is not None
        try:
            return loop.run(self.subscription.fetch(owner.fetch_batch, owner.poll_s),
                            owner.poll_s + owner.settings.timeout_s)
        except NoAnswer:  # a TimeoutError too, but a failed request, not an empty fetch
            raise
        except TimeoutError:  # nats-py's or asyncio's: the fetch found nothing new
            return []

    def _read_all_delivered(self) -> bool:
        """Whether JetStream holds nothing more for this consumer and every message it
        delivered was read here. An empty fetch alone does not tell (after a reconnect
        or a consumer reset, or while the server recovers its streams, a fetch finds
        nothing though messages wait): a lane that is not caught up keeps the merge
        waiting, else the other lanes and the clock would run ahead of its records and
        make them late. Deliveries that never arrived are asked for again."""
        owner, loop, client = self.owner, self.owner._loop, self.owner._client
        assert loop is not None and client is not None
        info = loop.run(client.jetstream().consumer_info(owner.settings.stream,
                                                         self.consumer),
                        owner.settings.timeout_s)
        delivered = info.delivered.stream_seq if info.delivered is not None else 0
        if (delivered or 0) > self.last:
            self.resync = True  # delivered, but not (yet) here: deliver them again
            return False
        return not info.num_pending

    def _failing(self, exc: Exception) -> None:
        """Note a failed fetch (deliveries may be lost with it: the consumer is reset
        before the next one) and wait ``poll_s``. The lane keeps the merge waiting: its
        records must not be overtaken."""
        self.resync, self.caught_up, self.state = True, False, "reading"
        self.error = f"{self.subject}: {type(exc).__name__}: {exc}"
        self.failing_since = self.failing_since or time.monotonic()
        self.owner._stop.wait(self.owner.poll_s)

    def _records(self, message: Msg) -> Iterator[AuditRecord]:
        """An event's records, or a clock message's ticks."""
        seq = message.metadata.sequence.stream
        origin = f"{self.subject}#{seq}"
        position = (self.name, seq)
        base = (message.headers or {}).get(CLOCK)
        try:
            document = loads(message.data)
            if base is not None:
                for after in document:
                    record = tick(int(base) + int(after), origin)
                    record.position = position
                    yield record
                return
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            self.bad.add("not_json" if base is None else "bad_clock_message", origin,
                         str(exc))
            return
        keep = self.owner.keep_lines
        for item in decode_document(document, origin):
            if isinstance(item, BadRecord):
                self.bad.add(item.reason, origin, str(item))
            else:
                item.position = position
                if keep:  # (a message is one Event: its line)
                    item.raw, keep = message.data, False
                yield item

    def _redeliver(self) -> None:
        """Have JetStream deliver again all after the acknowledged floor (what was read
        already is then dropped by its sequence): after a reconnect or a gap in the
        delivery sequence, nothing lost in flight stays unread until ``ack_wait_s``."""
        loop = self.owner._loop
        assert loop is not None
        loop.run(self._reset(), 2 * self.owner.settings.timeout_s)
        self.resync, self.delivered, self.caught_up = False, 0, False

    async def _reset(self) -> None:
        """Reset the consumer to its acknowledged floor and read it through a new
        subscription: deliveries to the old one (made before the reset, or to a fetch
        that gave up) are dropped with it; the reset's are numbered from 1."""
        client, stream = self.owner._client, self.owner.settings.stream
        assert client is not None
        js = client.jetstream()
        await js.reset_consumer(stream, self.consumer)
        old, self.subscription = self.subscription, await js.pull_subscribe_bind(
            durable=self.consumer, stream=stream)
        if old is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await old.unsubscribe()

    def acknowledge_before(self, seq: int) -> None:
        """Acknowledge the consumer up to the newest kept message before ``seq``."""
        reply = None
        while self.replies and self.replies[0][0] < seq:
            reply = self.replies.popleft()[1]
        loop, client = self.owner._loop, self.owner._client
        if reply is None or loop is None or client is None:
            return
        try:
            loop.run(client.publish(reply, Msg.Ack.Ack), self.owner.settings.timeout_s)
        except (nats.errors.Error, OSError) as exc:  # the checkpoint still holds it
            self.error = f"{self.subject}: acknowledging: {exc}"
