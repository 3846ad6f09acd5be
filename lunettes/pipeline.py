"""The pipeline, assembled from pipeline.yaml: source records -> pod records -> sinks."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lunettes import registry
from lunettes.analyzers.base import LIFECYCLE, PIPELINE_ROLES, SLO, STAGES
from lunettes.analyzers.dag import AnalyzerDAG
from lunettes.analyzers.lifecycle import Lifecycle
from lunettes.analyzers.slo import SLOResult, attribute_user_time
from lunettes.analyzers.stagedefs import StageSet
from lunettes.cli.exitcodes import sink_losses
from lunettes.config.bundled import bundled_config_dir
from lunettes.config.errors import ConfigError, Section, read_yaml
from lunettes.model.audit import AuditRecord
from lunettes.model.record import PodRecord
from lunettes.model.timeline import PodTimeline
from lunettes.processors.base import Processor, Run, build_processors, decodes_late
from lunettes.processors.carry import CarryRun, CarryStore
from lunettes.processors.checkpoint import Checkpointer, Checkpointing
from lunettes.processors.reorder import Reorder
from lunettes.registry import BuildContext
from lunettes.sinks.base import Sink
from lunettes.sinks.sqlite import SQLiteSink
from lunettes.sources.base import Source, build_sources, merged
from lunettes.sources.deadletter import DEFAULT_MAX_MB, DeadLetter
from lunettes.sources.errors import BadRecords, LateRecords

if TYPE_CHECKING:
    from lunettes.apiserver.stream import RequestStream

DEFAULT_CONFIG_DIR = bundled_config_dir()
GC_GEN0_THRESHOLD = 20_000


@contextmanager
def _collector_threshold(gen0: int) -> Iterator[None]:
    """Raise the collector's first threshold to ``gen0`` (never lower it) for a block."""
    old = gc.get_threshold()
    if old[0] >= gen0:
        yield
        return
    gc.set_threshold(gen0, *old[1:])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == gen0:  # unless someone else changed it meanwhile
            gc.set_threshold(*old)


@dataclass
class Settings:
    """The ``input:`` section of pipeline.yaml: where every bad (and late) record is
    written, with where it was and why (see :mod:`lunettes.sources.deadletter`; relative
    to the config directory), up to ``dead_letter_max_mb``. (The processors' settings are
    their own: see :mod:`lunettes.processors`.)"""

    dead_letter: str | None = None
    dead_letter_max_mb: float = DEFAULT_MAX_MB

    @classmethod
    def from_config(cls, section: Section) -> Settings:
        settings = cls(section.get("dead_letter", None, str),
                       section.get("dead_letter_max_mb", DEFAULT_MAX_MB, float))
        if settings.dead_letter_max_mb <= 0:
            section.problem("dead_letter_max_mb", "must be positive")
        section.check_unknown()
        return settings


def build_sinks(section: Section, context: BuildContext) -> list[Sink]:
    """One sink per key of the ``sinks`` section (``type`` or ``type/name``)."""
    return registry.build_section(registry.SINKS, section, context)


def load_config(config_dir: Path) -> dict[str, Any]:
    """The parsed pipeline.yaml of a config directory."""
    data = read_yaml(config_dir / "pipeline.yaml")
    return data if data is not None else {}


class Pipeline:
    """Records in, pod records out: processors (clock, dedupe, reorder window, fold...) ->
    analyzer DAG -> sinks.

    Build it with :meth:`from_config` (validates everything, reports all problems at once)
    or directly for embedding. ``on_record`` is called with each final pod record.
    ``sources`` (from the ``sources:`` section) are what :meth:`run` reads when it is given
    no records; their bad input is counted in ``bad``. ``processors`` (the ``processors:``
    section; default :data:`~lunettes.processors.base.DEFAULT_PROCESSORS`) turn records
    into final Pod timelines (see :class:`~lunettes.processors.base.Processor`).
    """

    def __init__(self, dag: AnalyzerDAG, sinks: list[Sink],
                 processors: list[Processor] | None = None, batch_size: int = 500,
                 sources: list[Source] | None = None, bad: BadRecords | None = None,
                 settings: Settings | None = None) -> None:
        players = {role: dag.providers(role) for role in PIPELINE_ROLES}
        problems = [f"pipeline: analyzers: exactly one analyzer must play the {role} role "
                    f"(found: {', '.join(a.name for a in found) or 'none'})"
                    for role, found in players.items() if len(found) != 1]
        if problems:
            raise ConfigError(problems)
        stages, lifecycle = players[STAGES][0], players[LIFECYCLE][0]
        self.stages_name, self.lifecycle_name = stages.name, lifecycle.name
        self.slo_names = [a.name for a in dag.providers(SLO)]
        self.stage_set: StageSet = stages.stage_set  # type: ignore[attr-defined]
        self.results = dag.results(PIPELINE_ROLES)
        """What the other analyzers add to each record (for sinks, the API, the table)."""
        self.dag = dag
        self.sinks = sinks
        self.sources = sources or []
        self.processors: list[Processor] = (
            processors if processors is not None
            else build_processors(Section({}, "pipeline.yaml:", []), BuildContext(Path())))
        self._stopping = False
        self.bad = bad if bad is not None else BadRecords()
        self.late = LateRecords(dead_letter=self.bad.dead_letter)
        """Records behind the reorder window: count and first places."""
        self.settings = settings or Settings()
        self.batch_size = batch_size
        self.stats: Counter[str] = Counter()
        self._run_state: Run | None = None
        self.carry: CarryStore | None = None
        """Where Pods in flight at the end of the input are carried to the next run into
        the same store (see :mod:`lunettes.processors.carry`); None: not carried."""

    @property
    def newest_us(self) -> int | None:
        """The newest audit timestamp read so far (the audit clock's watermark)."""
        return self._run_state.newest_us if self._run_state is not None else None

    @property
    def requests(self) -> RequestStream | None:
        """The API server load counts of the ``requests`` processor, if there is one."""
        from lunettes.apiserver.processor import Requests

        return next((p.stream for p in self.processors if isinstance(p, Requests)), None)

    @property
    def pods_in_flight(self) -> int:
        """Pods the running pipeline is following now (read-only, for metrics)."""
        return self._run_state.in_flight() if self._run_state is not None else 0

    @property
    def checkpoints(self) -> Checkpointer | None:
        """What writes checkpoints while the pipeline runs, if anything does."""
        return next((p.checkpoints for p in self.processors
                     if isinstance(p, Checkpointing)), None)

    @classmethod
    def from_config(cls, config_dir: Path = DEFAULT_CONFIG_DIR,
                    data: Mapping[str, Any] | None = None,
                    env: Mapping[str, str] | None = None,
                    extra_sinks: Iterable[Sink] = ()) -> Pipeline:
        """Build from ``config_dir``/pipeline.yaml (or ``data``, already parsed). With a
        ``checkpoint`` section (``path``, ``interval_s``), sources resume from the
        checkpoint found there, and the run writes new ones."""
        problems: list[str] = []
        origin = f"{config_dir / 'pipeline.yaml'}:"
        top = Section(load_config(config_dir) if data is None else data, origin, problems)
        section = top.sub("checkpoint")
        checkpointing = Checkpointing.from_section(section, config_dir)
        restored = checkpointing.restored if checkpointing is not None else None
        inputs = top.sub("input")
        settings = Settings.from_config(inputs)
        bad = BadRecords()
        if settings.dead_letter and not problems:
            try:
                bad.dead_letter = DeadLetter(config_dir / settings.dead_letter,
                                             int(settings.dead_letter_max_mb * 2**20))
            except OSError as exc:
                inputs.problem("dead_letter", f"cannot write it: {exc}")
        context = BuildContext(config_dir=config_dir, env=dict(env or {}), bad=bad,
                               resume=dict(restored.positions) if restored else {},
                               checkpointing=checkpointing is not None)
        processors = build_processors(top, context)
        context = replace(context, decode_late=decodes_late(processors))
        if checkpointing is not None:
            processors.insert(0, checkpointing)
        sources = build_sources(top.sub("sources"), context)
        if checkpointing is not None and not all(source.live for source in sources):
            section.problem("path", "checkpoints need resumable sources (follow, webhook); "
                                    "file sources are read whole")
        try:
            dag = AnalyzerDAG.build(top.sub("analyzers"), context)
        except ConfigError:
            dag = None
        if dag is not None:  # sinks read the results by role
            context = replace(context, results=dag.results(PIPELINE_ROLES))
        sinks = build_sinks(top.sub("sinks"), context)
        top.check_unknown()
        if problems or dag is None:
            for sink in sinks:
                sink.shutdown()
            for source in sources:
                source.close()
            if bad.dead_letter is not None:
                bad.dead_letter.close()
            raise ConfigError(problems)
        pipeline = cls(dag, [*sinks, *extra_sinks], processors, sources=sources,
                       bad=context.bad, settings=settings)
        store = next((s for s in sinks if isinstance(s, SQLiteSink)), None)
        if store is not None and checkpointing is None:  # live runs resume from checkpoints
            pipeline.carry = CarryStore(store.path)
        return pipeline

    def record_of(self, timeline: PodTimeline) -> PodRecord:
        """Run the analyzer DAG over one final timeline and assemble its pod record."""
        outputs = self.dag.run(timeline)
        life: Lifecycle = outputs[self.lifecycle_name]
        spec = timeline.spec
        record = PodRecord(
            uid=timeline.uid, namespace=timeline.namespace, name=timeline.name,
            node=life.node, created_us=life.created_us, finished_us=life.finished_us,
            outcome=life.outcome, partial=timeline.partial, uid_derived=timeline.uid_derived,
            owner_kind=spec.owner_kind if spec else "",
            owner_name=spec.owner_name if spec else "",
            last_seen_us=life.last_seen_us, end_reason=timeline.end_reason,
            stages=outputs[self.stages_name],
            measured_from_us=next((e.time_us for e in timeline.events if e.op == "bind"),
                                  None) if timeline.partial else None,
            trace_context=spec.trace_context if spec else "",
        )
        for name, output in outputs.items():
            if name not in (self.lifecycle_name, self.stages_name):
                record.results[name] = output.to_dict() if hasattr(output, "to_dict") else output
        slo = next((outputs[name] for name in self.slo_names), None)
        if isinstance(slo, SLOResult) and slo.total_us is not None:
            # the stages take the SLO's account of who owns their time (one story)
            end = life.finished_us if life.finished_us is not None else life.last_seen_us
            attribute_user_time(record.stages, slo.user_intervals, end)
        return record

    def run(self, records: Iterable[AuditRecord] | None = None,
            on_record: Callable[[PodRecord], None] | None = None,
            bad: BadRecords | None = None) -> Counter[str]:
        """Process every record, export every pod record, flush the sinks; return stats.

        Without ``records``, the pipeline's sources are read, merged by audit time.
        Records refused here (quarantined as too far ahead of the audit clock, or with a
        body field of the wrong type) are counted in ``bad`` (default: :attr:`bad`), with
        where they were read.

        While it runs, the cyclic garbage collector's first generation holds at least
        :data:`GC_GEN0_THRESHOLD` objects before a collection (restored afterwards): the
        pipeline makes few cycles, and the default (700) spent a tenth of a replay scanning
        decoded bodies that reference counting frees anyway.
        """
        if records is None:
            records = merged(self.sources)
        with _collector_threshold(GC_GEN0_THRESHOLD):
            return self._run(records, on_record, self.bad if bad is None else bad)

    def _run(self, records: Iterable[AuditRecord],
             on_record: Callable[[PodRecord], None] | None, bad: BadRecords) -> Counter[str]:
        stats = self.stats
        batch: list[PodRecord] = []
        stage_set = self.stage_set

        def flush() -> None:
            self._export(batch)
            for sink in self.sinks:
                sink.force_flush()

        window_us = next((p.window_us for p in self.processors if isinstance(p, Reorder)), 0)
        run = self._run_state = Run(
            stats, bad, lambda t, e: stage_set.delivered(t.spec, e), flush,
            self.processors, self.sources, late=self.late,
            stopping=lambda: self._stopping,
            carry=CarryRun(self.carry, window_us) if self.carry is not None else None)
        items: Iterator[Any] = iter(records)
        for processor in self.processors:
            items = processor.process(items, run)
        for timeline in items:
            record = self.record_of(timeline)
            stats[f"outcome:{record.outcome}"] += 1
            batch.append(record)
            if on_record is not None:
                on_record(record)
            if len(batch) >= self.batch_size:  # the end of input drains in batches too
                self._export(batch)
        flush()
        stats["sink_lost"] = sink_losses(self.sinks)
        if bad.dead_letter is not None:
            stats["dead_letter_written"] = bad.dead_letter.written
            stats["dead_letter_dropped"] = bad.dead_letter.dropped
        return stats

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """End a live run (from another thread): its sources are closed; with
        checkpoints, in-flight Pods are left to the next run instead of being written
        partial (without, they are written as the end of the input leaves them)."""
        self._stopping = True
        for source in self.sources:
            source.close()

    def _export(self, batch: list[PodRecord]) -> None:
        if batch:
            for sink in self.sinks:
                sink.export(batch)
            batch.clear()

    def shutdown(self) -> None:
        """Close every source and shut every sink down (safe twice); ``stats['sink_lost']``
        then counts what the sinks lost, during the shutdown too."""
        for source in self.sources:
            source.close()
        for sink in self.sinks:
            sink.shutdown()
        self.stats["sink_lost"] = sink_losses(self.sinks)
        if self.bad.dead_letter is not None:
            self.bad.dead_letter.close()
