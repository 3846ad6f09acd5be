"""The source contract, and the sources of a pipeline built from its ``sources:`` section.

Every source type registers under the ``lunettes.sources`` entry-point group and is built by
``from_config(key, section, context)``, as sinks are; keys are ``type`` or ``type/name``
(``follow/apiserver-1``, ``follow/apiserver-2``: several of one type may coexist). The
command line's paths and flags are overrides of this section
(:mod:`lunettes.config.overrides`).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from lunettes import registry
from lunettes.config.errors import Section
from lunettes.model.audit import TICK_STAGE, AuditRecord
from lunettes.registry import BuildContext
from lunettes.sources.errors import BadRecords

__all__ = ["Source", "build_sources", "merged"]

STATES = ("starting", "reading", "following", "stalled", "failed", "done")
"""What a source says of itself: ``following`` a live input it has caught up with,
``stalled`` when it has not been able to read for a while (a webhook: when its spool is
full), ``failed`` when it gave up."""


@runtime_checkable
class Source(Protocol):
    """Audit records from one input (files, a followed log, a webhook, a search index).

    - ``iter(source)`` yields AuditRecords in the order the input holds them, until the
      input ends (files) or :meth:`close` is called (live inputs: ``live`` is True). Bad
      input is counted in ``bad`` (reason, where) and never raised.
    - Position: a resumable source sets ``record.position = (lane, n)`` on every record
      it yields: ``lane`` names one ordered stream of the source (a followed path, the
      webhook spool, a search, a partition; unique across the pipeline, e.g.
      ``follow:/var/log/audit.log``) and ``n`` increases along it. ``checkpoint(lane, n)``
      is the JSON-able state from which the same source, built again with
      ``context.resume[lane]`` set to it, yields that record first (a file's inode and
      offset, the webhook spool's offset, a search's sort values). Non-resumable sources
      leave ``position`` None and their ``checkpoint`` returns None.
    - ``state`` is one of :data:`STATES`, ``error`` says why it failed or stalled.
    - ``close()`` stops the iteration from any thread and releases the input; safe twice.
    """

    name: str
    bad: BadRecords
    live: bool
    state: str
    error: str

    def __iter__(self) -> Iterator[AuditRecord]: ...

    def checkpoint(self, lane: str, n: int) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


def build_sources(section: Section, context: BuildContext) -> list[Source]:
    """One source per key of the ``sources`` section (``type`` or ``type/name``)."""
    return registry.build_section(registry.SOURCES, section, context)


IDLE = frozenset({"following", "stalled", "failed", "done"})
"""States in which a source holds nothing back: the merge does not wait for it."""


class _Lane:
    __slots__ = ("done", "error", "items", "source")

    def __init__(self, source: Source) -> None:
        self.source = source
        self.items: deque[AuditRecord] = deque()
        self.done = False
        self.error: BaseException | None = None


def merged(sources: list[Source], lane_capacity: int = 5_000) -> Iterator[AuditRecord]:
    """The records of several sources as one stream, merged by audit time.

    Each source is read by its own thread into a lane; the next record is the oldest head
    of the lanes, once every source that is still reading has one (a live source that has
    caught up, or stalled, is not waited for). What stays out of order (API servers'
    clocks, batching) the pipeline's reorder window absorbs. One source is read directly.
    The stream ends when every source has ended; a source that raises closes the others
    and its error is raised here.
    """
    if len(sources) == 1:
        yield from sources[0]
        return
    lanes = [_Lane(s) for s in sources]
    cond = threading.Condition()
    closing = threading.Event()

    def pump(lane: _Lane) -> None:
        try:
            for record in lane.source:
                with cond:
                    lane.items.append(record)
                    cond.notify_all()
                    if len(lane.items) >= lane_capacity:
                        cond.wait_for(lambda: len(lane.items) < lane_capacity
                                      or closing.is_set())
                if closing.is_set():
                    return
        except BaseException as exc:  # passed to the reading thread
            lane.error = exc
        finally:
            with cond:
                lane.done = True
                cond.notify_all()

    for lane in lanes:
        threading.Thread(target=pump, args=(lane,), daemon=True,
                         name=f"lunettes-source-{lane.source.name}").start()
    try:
        while True:
            with cond:
                while True:
                    failed = next((lane.error for lane in lanes if lane.error), None)
                    if failed is not None:
                        raise failed
                    heads = [lane for lane in lanes if lane.items]
                    waiting = any(not lane.items and not lane.done
                                  and lane.source.state not in IDLE for lane in lanes)
                    if heads and not waiting:
                        break
                    if not heads and all(lane.done for lane in lanes):
                        return
                    cond.wait(0.05)  # also rechecks sources that went idle
                # at one time, records before clock ticks (a tick never passes a record)
                lane = min(heads, key=lambda h: (h.items[0].received_us,
                                                 h.items[0].stage is TICK_STAGE))
                record = lane.items.popleft()
                cond.notify_all()
            yield record
    finally:
        closing.set()
        for source in sources:
            source.close()
        with cond:
            cond.notify_all()
