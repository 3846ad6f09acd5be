"""The processor contract, and the chain of a pipeline built from its ``processors:`` section.

Every processor type registers under the ``lunettes.processors`` entry-point group and is
built by ``from_config(key, section, context)``, as sources and sinks are; keys are ``type``
or ``type/name``. The section is a list: records flow through it in its order (a mapping's
order would not survive tools that sort keys).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lunettes import registry
from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord
from lunettes.model.hyperevent import HyperEvent
from lunettes.model.timeline import PodTimeline
from lunettes.registry import BuildContext
from lunettes.sources.errors import BadRecords, LateRecords

__all__ = ["DEFAULT_PROCESSORS", "LINES", "RECORDS", "TIMELINES", "Processor", "Run",
           "build_processors", "decodes_late", "lowest", "seconds"]

LINES = "lines"
"""Audit records as sources yield them: decoded, or still raw lines (``record.undecoded``: only
their auditID, stage, time, origin and position are known) when the chain decodes them
later (a processor that reads lines and writes records: ``decode``)."""
RECORDS = "records"
"""Decoded audit records only."""
TIMELINES = "timelines"
"""Final Pod timelines, what the analyzers read."""

DEFAULT_PROCESSORS = ("clock", "dedupe", "bodies", "reorder", "decode", "fold")
"""The chain of a pipeline.yaml without a ``processors:`` list (each factory owns its
defaults)."""


@dataclass
class Run:
    """What the processors of one run share: injected by the pipeline, never global.

    ``delivered`` tells the fold when a Pod's delivery ended (the stages analyzer's
    rules); ``flush`` writes out the pod records finished so far and flushes the sinks
    (before a checkpoint). A processor that leaves what it holds to the next run (a
    stopped live run with checkpoints) sets ``keep_held``: the others then hold theirs
    too at the end of the input, instead of passing it on.
    """

    stats: Counter[str]
    bad: BadRecords
    delivered: Callable[[PodTimeline, HyperEvent], bool]
    flush: Callable[[], None] = lambda: None
    processors: list[Processor] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)
    """The pipeline's sources (they turn positions into checkpoint states)."""
    late: LateRecords = field(default_factory=LateRecords)
    """Records behind the reorder window."""
    newest_us: int | None = None
    """The newest audit timestamp read so far (the audit clock's watermark)."""
    in_flight: Callable[[], int] = lambda: 0
    """How many Pods are in flight now (set by the processor that follows them)."""
    stopping: Callable[[], bool] = lambda: False
    keep_held: bool = False
    carry: Any = None
    """The :class:`~lunettes.processors.carry.CarryRun` of a run into a SQLite store
    (Pods in flight carried between runs), else None."""

    @property
    def ending(self) -> bool:
        """True when processors pass on what they hold at the end of the input."""
        return not (self.keep_held and self.stopping())


@runtime_checkable
class Processor(Protocol):
    """One step between the sources and the analyzers.

    - ``process(items, run)`` yields what follows from ``items`` (an iterator of
      ``reads``: records or timelines), in order, as they are ready; it may hold some
      back and must pass them on when ``items`` ends if ``run.ending``. It counts in
      ``run.stats`` and ``run.bad``. ``writes`` is what it yields (None: what it reads).
    - ``held()`` is the lowest source position, by lane, of the records it holds now
      (see :mod:`lunettes.processors.checkpoint`); ``state()`` is what a checkpoint keeps
      of it (JSON-able; None: nothing), given back to ``restore`` when a run resumes.
    """

    name: str
    reads: str
    writes: str | None

    def process(self, items: Iterator[Any], run: Run) -> Iterator[Any]: ...

    def held(self) -> dict[str, int]: ...

    def state(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


class Stateless:
    """Defaults for processors that hold nothing between items and keep no state."""

    name = ""
    reads = LINES
    writes: str | None = None

    def held(self) -> dict[str, int]:
        return {}

    def state(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        """Nothing to restore."""


def seconds(section: Section, key: str, default_s: float) -> int:
    """A duration in seconds of a processor's section, in microseconds (never negative)."""
    value = section.get(key, default_s, float)
    if value < 0:
        section.problem(key, "must not be negative")
        value = default_s
    return int(value * 1_000_000)


def lowest(records: Iterable[AuditRecord], into: dict[str, int] | None = None
           ) -> dict[str, int]:
    """The lowest position by lane of ``records`` (merged into ``into``)."""
    out = {} if into is None else into
    for record in records:
        position = record.position
        if position is not None:
            lane, n = position
            if n < out.get(lane, n + 1):
                out[lane] = n
    return out


def decodes_late(processors: Iterable[Processor]) -> bool:
    """True when a processor decodes records (writes them from lines): sources may then
    leave them undecoded (:attr:`~lunettes.registry.BuildContext.decode_late`)."""
    return any(p.writes == RECORDS for p in processors)


def build_processors(top: Section, context: BuildContext) -> list[Processor]:
    """The processors of ``top``'s ``processors`` list, in order (absent:
    :data:`DEFAULT_PROCESSORS`), checked to read what the one before writes and to end with
    Pod timelines. An item is a key (``type`` or ``type/name``) or a mapping of one key
    to its settings."""
    items = top.get("processors", None, list)
    where = top.join("processors")
    section = Section({}, where, top.problems)
    built: list[Processor] = []
    seen: set[str] = set()
    for index, item in enumerate(DEFAULT_PROCESSORS if items is None else items):
        if isinstance(item, Mapping) and len(item) == 1:
            key, settings = next(iter(item.items()))
        elif isinstance(item, str):
            key, settings = item, None
        else:
            top.problems.append(f"{where}[{index}]: expected a processor type or a mapping "
                                f"of one type to its settings, got {item!r}")
            continue
        key = str(key)
        if key in seen:
            section.problem(key, "listed twice (name the second type/name)")
            continue
        seen.add(key)
        processor = registry.build(registry.PROCESSORS, key,
                                   Section(settings, section.join(key), top.problems),
                                   context)
        if processor is not None:
            built.append(processor)
    flowing = LINES if decodes_late(built) else RECORDS
    for processor in built:
        if not (processor.reads == flowing or (processor.reads == LINES
                                               and flowing == RECORDS)):
            section.problem(processor.name, f"reads {processor.reads}, but gets {flowing} "
                                            f"here; move it")
            return built
        flowing = processor.writes or flowing
    if built and flowing != TIMELINES:
        section.problem(built[-1].name, f"the last processor writes {flowing}; the "
                                        f"analyzers read {TIMELINES} (end with fold)")
    return built
