"""What the webhook receivers and the ``nats`` source share: the JetStream stream, its
subjects, the connection settings, and an asyncio loop for synchronous callers.

Layout of the stream (``stream``, default ``LUNETTES_AUDIT``, subjects ``<prefix>.>``):

- ``<prefix>.pods.<k>``: audit events about Pods (and their Events), partition ``k`` of
  ``partitions`` chosen by the Pod's key with the ``--workers`` function
  (:func:`lunettes.sources.partition.owner`), so every record about one Pod is on one
  subject.
- ``<prefix>.apiserver``: every other event (leases, lists, watches, other resources),
  kept for the API-server analysis.
- ``<prefix>.clock``: one clock message per batch (header :data:`CLOCK`), the time of
  every event of the batch that moves the audit clock (final stages, and events about
  Pods), in the batch's order. Every consumer instance reads it besides its partitions,
  so its audit clock moves as a file replay's does: Pods time out and leave memory at
  the same records, whichever partitions an instance reads.

Events are stored as the JSON lines a log would hold, with ``Nats-Msg-Id`` set to
``auditID/stage``: a batch the API server sends again is stored once (within the stream's
duplicate window). The partition count is written into the stream's metadata when the
stream is created; a receiver or source configured with another count is refused.
Needs nats-server 2.14 or later (consumer reset) and the ``nats`` extra (nats-py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from lunettes.config.errors import Section

__all__ = ["CLOCK", "EventLoop", "NoAnswer", "StreamSettings", "connect", "ensure_stream"]

CLOCK = "Lunettes-Clock"
"""Header of a clock message: a time in µs; its body lists the batch's times as µs after
it (JSON)."""
PARTITIONS_KEY = "lunettes.partitions"
T = TypeVar("T")


@dataclass(frozen=True)
class StreamSettings:
    """Where the stream is and how it is cut; see the module docstring."""

    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "LUNETTES_AUDIT"
    prefix: str = "lunettes.audit"
    partitions: int = 16
    replicas: int = 1
    max_age_s: float = 7 * 86400.0
    token: str = ""
    creds_file: str = ""
    timeout_s: float = 5.0

    def pod_subject(self, partition: int) -> str:
        return f"{self.prefix}.pods.{partition}"

    @property
    def apiserver_subject(self) -> str:
        return f"{self.prefix}.apiserver"

    @property
    def clock_subject(self) -> str:
        return f"{self.prefix}.clock"

    @classmethod
    def from_config(cls, section: Section, config_dir: Path) -> StreamSettings:
        """``servers`` (nats:// URLs), ``stream``, ``subject_prefix``, ``partitions`` (16:
        the same for every receiver and source of the stream), ``replicas`` (1; 3 on a
        JetStream cluster), ``max_age_s`` (7 days kept), ``token_file`` or
        ``creds_file``, ``timeout_s`` (5: a publish or API call)."""
        default = cls()
        servers = section.strings("servers") or list(default.servers)
        stream = section.get("stream", default.stream, str)
        prefix = section.get("subject_prefix", default.prefix, str)
        partitions = section.get("partitions", default.partitions, int)
        replicas = section.get("replicas", default.replicas, int)
        max_age_s = float(section.get("max_age_s", default.max_age_s, (int, float)))
        timeout_s = float(section.get("timeout_s", default.timeout_s, (int, float)))
        token_file = section.get("token_file", None, str)
        creds_file = section.get("creds_file", None, str)
        token = ""
        if token_file:
            try:
                token = (config_dir / token_file).read_text().strip()
            except OSError as exc:
                section.problem("token_file", f"cannot read it: {exc.strerror or exc}")
        if partitions < 1:
            section.problem("partitions", f"must be at least 1, got {partitions}")
        if replicas < 1:
            section.problem("replicas", f"must be at least 1, got {replicas}")
        for key, value in (("max_age_s", max_age_s), ("timeout_s", timeout_s)):
            if value <= 0:
                section.problem(key, f"must be positive, got {value}")
        if not prefix or any(c in prefix for c in " *>") or prefix.endswith("."):
            section.problem("subject_prefix", f"not a subject prefix: {prefix!r}")
        return cls(tuple(servers), stream, prefix, max(1, partitions), replicas,
                   max_age_s, token,
                   str(config_dir / creds_file) if creds_file else "", timeout_s)


async def connect(settings: StreamSettings,
                  reconnected: Callable[[], Awaitable[None]] | None = None) -> Client:
    """A connection that reconnects for ever (the pipeline outlives server restarts),
    calling ``reconnected`` after each reconnection."""
    options: dict[str, Any] = {"servers": list(settings.servers),
                               "max_reconnect_attempts": -1,
                               "connect_timeout": max(1, int(settings.timeout_s))}
    if reconnected is not None:
        options["reconnected_cb"] = reconnected
    if settings.token:
        options["token"] = settings.token
    if settings.creds_file:
        options["user_credentials"] = settings.creds_file
    return await nats.connect(**options)


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> None:
    """Create the stream unless it exists; refuse one cut in another partition count."""
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        await js.add_stream(StreamConfig(
            name=settings.stream, subjects=[f"{settings.prefix}.>"],
            storage=StorageType.FILE, num_replicas=settings.replicas,
            max_age=settings.max_age_s, duplicate_window=120.0,
            metadata={PARTITIONS_KEY: str(settings.partitions)}))
        return
    found = (info.config.metadata or {}).get(PARTITIONS_KEY)
    if found is not None and found != str(settings.partitions):
        raise ValueError(f"stream {settings.stream} is cut in {found} partitions, not "
                         f"{settings.partitions}: set partitions: {found}")


class NoAnswer(TimeoutError):
    """A coroutine run by :meth:`EventLoop.run` did not end in time."""


class EventLoop:
    """An asyncio loop on its own daemon thread, for synchronous callers."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name=name)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """The coroutine's result; :class:`NoAnswer` (and the coroutine cancelled) after
        ``timeout_s``."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        if not concurrent.futures.wait([future], timeout_s).done:
            future.cancel()  # (the coroutine's own TimeoutError is raised as it is)
            raise NoAnswer(f"no answer within {timeout_s} s")
        return future.result()

    def submit(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run the coroutine in the background (until it ends or the loop stops)."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        """Cancel what still runs on the loop (the client's own tasks: a subscription's
        reader outlives ``close()``), then stop the loop and its thread and close the loop
        (safe twice): nothing is left to run, or to fail, on a closed loop later."""
        if self._thread.is_alive():
            with contextlib.suppress(NoAnswer):
                self.run(_cancel_others(), 5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()


async def _cancel_others() -> None:
    """Cancel every other task of the running loop and wait for them to end."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
