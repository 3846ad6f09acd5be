"""SpooledDelivery: encoded batches sent by a background thread, the undeliverable on disk.

The OTLP and Elasticsearch sinks encode pod records into payloads (one request each) and
``submit`` them; a :class:`Sender` puts one payload on the wire. Nothing the destination
does can stall the caller:

- ``submit`` appends to a bounded in-memory queue, or writes straight to the
  :class:`~lunettes.sinks.spool.DiskSpool` when the queue is full or the destination is
  down. It never waits on the network.
- One thread sends: the spool first, oldest first, then the queue. A send retries
  transient failures until ``timeout_s`` has passed; what is still undelivered is spooled
  and the destination is *down*: from then on new payloads go to the spool, and the thread
  probes with the oldest spooled file (one attempt, exponential backoff with jitter, at
  least the Retry-After the destination asked for) until one is taken, then drains.
- Exactly once: a spooled file is removed only when the destination took it, and a payload
  from the queue is spooled only when it was not taken, so nothing that reached the
  destination (an answer said so) is sent again, and nothing that did not is forgotten, by
  this process or the next one with the same spool directory.
- Lost is only what the spool's size limit drops (oldest first) and what the destination
  refuses for good (the sender logs why): ``lost`` counts those pod records.

``flush`` waits until everything submitted was delivered; it gives up early once the
destination is down and a probe made after the call failed too. ``close`` does not wait on
the destination: the queue and a payload still on the wire are spooled for the next run
(the payload's file is removed again if its answer arrives in time and says it was taken).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Protocol, Self

from lunettes.sinks.base import SinkClosedError
from lunettes.sinks.spool import DiskSpool, SpoolFile

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 0.2
"""How long ``close`` lets an answer on the wire arrive before leaving it to the spool."""


@dataclass(slots=True)
class Payload:
    """One encoded request: ``count`` units the destination counts (spans, documents) of
    ``pods`` pod records."""

    data: bytes
    count: int
    pods: int


@dataclass(slots=True)
class Outcome:
    """What a send did. ``rest``: what the destination did not take (None: everything
    was taken or refused for good), with ``reason`` and the ``retry_after_s`` it asked
    for; ``refused_pods``: pod records refused for good (logged by the sender)."""

    rest: Payload | None = None
    reason: str = ""
    retry_after_s: float | None = None
    refused_pods: int = 0


class Sender(Protocol):
    """Puts payloads on the wire for :class:`SpooledDelivery`."""

    def send(self, payload: Payload, deadline: float, retry: bool) -> Outcome:
        """Send ``payload``, retrying transient failures until ``deadline`` (a
        ``time.monotonic()`` value) if ``retry``; never raises for the destination's
        failures, and no single call on the wire outlives ``deadline``."""
        ...

    def interrupt(self) -> None:
        """Cut a send in progress short (called from another thread on close)."""
        ...


class SpooledDelivery:
    """Sends payloads off the caller's thread; see the module docstring.

    ``name`` names the destination in logs; ``queue_size`` is the number of payloads held
    in memory; ``timeout_s`` bounds one send with its retries; ``backoff_base_s`` and
    ``backoff_max_s`` space the probes of a destination that is down.
    """

    def __init__(self, name: str, sender: Sender, spool: DiskSpool, *, queue_size: int,
                 timeout_s: float, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 30.0) -> None:
        self.name = name
        self.sender = sender
        self.spool = spool
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stats: Counter[str] = Counter()
        """``spooled``, ``drained`` and ``dropped`` units; ``lost_pods``."""
        self._queue: deque[Payload] = deque()
        self._cond = threading.Condition()
        self._down: str | None = None
        self._probes = 0
        self._probe_at = 0.0
        self._attempts_done = 0
        """Sends finished so far (a flush waits for one that ends after its call)."""
        self._outages = 0
        self._in_flight: tuple[Payload, SpoolFile | None] | None = None
        self._taken_over: SpoolFile | None = None
        self._closed = False
        self._random = random.Random()
        self._thread: threading.Thread | None = None

    @property
    def lost(self) -> int:
        """Pod records lost for good: dropped by the spool's limit or refused."""
        return self.stats["lost_pods"]

    @property
    def down(self) -> str | None:
        """Why the destination is taken for down, or None."""
        return self._down

    def pending(self) -> int:
        """Units not delivered yet: queued, on the wire or spooled."""
        with self._cond:
            queued = sum(p.count for p in self._queue)
            wire = self._in_flight[0].count if self._in_flight and not self._in_flight[1] else 0
            return queued + wire + self.spool.pending()

    # -- the caller's side ---------------------------------------------------------------

    def submit(self, payload: Payload) -> None:
        """Queue a payload, or spool it if the queue is full or the destination down."""
        with self._cond:
            if self._closed:
                raise SinkClosedError(f"{self.name} sink is shut down")
            self._start()
            if self._down is not None or len(self._queue) >= self.queue_size:
                self._to_spool(payload, self._down or f"queue of {self.queue_size} full")
                return
            self._queue.append(payload)
            self._cond.notify_all()

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything submitted is delivered (True), or give up (False) once
        ``timeout_s`` passed or the destination is down: it went down during the call, or
        an attempt begun after the call failed (one is begun at once). Whatever it returns,
        nothing submitted before the call is left only in memory but a payload on the
        wire."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            if self._closed:
                return not self._queue and self.spool.pending() == 0
            self._start()
            started_before = self._attempts_done + (self._in_flight is not None)
            outages_before = self._outages
            probing = False
            while True:
                if not self._queue and self._in_flight is None and not self.spool.files():
                    return True
                if self._down is not None:
                    if self._outages > outages_before or self._attempts_done > started_before:
                        self._spool_queue()
                        return False
                    if not probing:
                        probing = True
                        self._probe_at = 0.0  # probe now
                        self._cond.notify_all()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._spool_queue()  # on disk, at least, when the call returns
                    return False
                self._cond.wait(remaining)

    def finish(self, timeout_s: float) -> None:
        """A sink's shutdown: flush within ``timeout_s`` unless the destination is known to
        be down (no wait for it), then :meth:`close`."""
        try:
            if self.down is None:
                self.flush(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread; spool what is queued or on the wire. Safe twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._spool_queue()
            if self._in_flight is not None and self._in_flight[1] is None:
                payload = self._in_flight[0]
                self._taken_over = self._to_spool(payload, "shutting down with it on the wire")
            self._cond.notify_all()
        self.sender.interrupt()
        if self._thread is not None:
            self._thread.join(CLOSE_GRACE_S)
        with self._cond:
            left = self.spool.pending_pods()
        if left:
            log.warning("%s: %d pod records stay spooled in %s; the next run with this "
                        "spool_dir sends them", self.name, left, self.spool.directory)

    # -- the thread ----------------------------------------------------------------------

    def _start(self) -> None:
        """Start the sending thread on the first submit or flush (building opens nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name=f"lunettes-{self.name}-export")
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                if job is None:
                    return
                self._in_flight = job
                self.spool.busy = job[1]
            payload, spooled = job
            retry = spooled is None or self._down is None
            try:
                outcome = self.sender.send(payload, time.monotonic() + self.timeout_s, retry)
            except Exception as exc:  # a bug in a sender must not lose the payload
                log.exception("%s: sending failed unexpectedly", self.name)
                outcome = Outcome(rest=payload, reason=f"{type(exc).__name__}: {exc}")
            with self._cond:
                self._settle(payload, spooled, outcome)
                self._in_flight = None
                self.spool.busy = None
                self._attempts_done += 1
                self._cond.notify_all()

    def _next(self) -> tuple[Payload, SpoolFile | None] | None:
        """The next payload to send (and its spool file), or None once closed."""
        while not self._closed:
            if self._down is not None:
                self._spool_queue()
                files = self.spool.files()
                if not files:
                    self._set_down(None)
                    continue
                wait = self._probe_at - time.monotonic()
                if wait <= 0:
                    return self._read(files[0]), files[0]
                self._cond.wait(wait)
                continue
            files = self.spool.files()
            if files:
                return self._read(files[0]), files[0]
            if self._queue:
                return self._queue.popleft(), None
            self._cond.wait()
        return None

    def _read(self, spooled: SpoolFile) -> Payload:
        return Payload(self.spool.read_bytes(spooled), spooled.count, spooled.pods)

    def _settle(self, payload: Payload, spooled: SpoolFile | None, outcome: Outcome) -> None:
        """Book a finished send: remove, shrink or write the spool file as it says."""
        self.stats["lost_pods"] += outcome.refused_pods
        rest = outcome.rest
        if spooled is None and self._taken_over is not None:  # close() spooled it
            spooled, self._taken_over = self._taken_over, None
        if spooled is not None:
            if rest is None:
                self.spool.remove(spooled)
                self.stats["drained"] += payload.count
            elif rest.data != payload.data:
                self.spool.replace_bytes(spooled, rest.data, rest.count, rest.pods)
                self.stats["drained"] += payload.count - rest.count
        elif rest is not None:
            self._to_spool(rest, outcome.reason)
        if rest is None:
            self._set_down(None)
        else:
            self._set_down(outcome.reason or "not delivered", outcome.retry_after_s)

    def _spool_queue(self) -> None:
        while self._queue:
            self._to_spool(self._queue.popleft(), self._down or "shutting down")

    def _to_spool(self, payload: Payload, reason: str) -> SpoolFile | None:
        spooled, dropped = self.spool.append_bytes(payload.data, payload.count, payload.pods)
        self.stats["spooled"] += payload.count
        self.stats["dropped"] += dropped.count
        self.stats["lost_pods"] += dropped.pods
        log.debug("%s: spooled %d pod records (%s)", self.name, payload.pods, reason)
        return spooled

    def _set_down(self, reason: str | None, retry_after_s: float | None = None) -> None:
        """Log once when the destination goes down and once when it is back; schedule the
        next probe while it is down."""
        if reason is None:
            if self._down is not None:
                log.warning("%s takes data again; sending what was spooled", self.name)
            self._down, self._probes = None, 0
            return
        if self._down is None:
            self._outages += 1
            log.error("%s cannot take data (%s); spooling to %s", self.name, reason,
                      self.spool.directory)
        self._down = reason
        cap = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(self._probes, 30)))
        delay = max(cap * self._random.uniform(0.5, 1.0), retry_after_s or 0.0)
        self._probes += 1
        self._probe_at = time.monotonic() + delay


class SpooledSink(ABC):
    """What a sink delivering through a :class:`SpooledDelivery` (``self._delivery``)
    answers by it: flush, pending work, losses, the spool, and ``with`` (shutdown on
    exit)."""

    _delivery: SpooledDelivery

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything exported so far was delivered (or refused for good);
        False when the destination is down (the rest is spooled) or ``timeout_s`` passed."""
        return self._delivery.flush(timeout_s)

    def pending(self) -> int:
        """What is not delivered yet: queued, on the wire or spooled."""
        return self._delivery.pending()

    @property
    def lost(self) -> int:
        """Pod records lost for good: refused by the destination or dropped by the spool."""
        return self._delivery.lost

    @property
    def spool(self) -> DiskSpool:
        return self._delivery.spool

    @abstractmethod
    def shutdown(self) -> None:
        """Flush within the sink's timeout, stop, spool what is left. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
