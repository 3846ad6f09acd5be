"""The pipeline, assembled from pipeline.yaml: source records -> pod records -> sinks."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lunettes import registry
from lunettes.analyzers.base import LIFECYCLE, PIPELINE_ROLES, SLO, STAGES
from lunettes.analyzers.dag import AnalyzerDAG
from lunettes.analyzers.lifecycle import Lifecycle
from lunettes.analyzers.slo import SLOResult, attribute_user_time
from lunettes.analyzers.stagedefs import StageSet
from lunettes.cli.exitcodes import sink_losses
from lunettes.config.bundled import bundled_config_dir
from lunettes.config.errors import ConfigError, Section, read_yaml
from lunettes.model.audit import SKIPPED_STAGE, TICK_STAGE, AuditRecord
from lunettes.model.record import PodRecord
from lunettes.model.spec import TRACE_ANNOTATIONS
from lunettes.model.timeline import PodTimeline
from lunettes.model.times import format_time
from lunettes.processors.checkpoint import Checkpoint, Checkpointer
from lunettes.processors.clock import FutureGuard
from lunettes.processors.dedupe import Deduplicator
from lunettes.processors.fold import Folder
from lunettes.processors.reorder import ReorderWindow
from lunettes.registry import BuildContext
from lunettes.sinks.base import Sink
from lunettes.sources.base import Source, build_sources, merged
from lunettes.sources.deadletter import DEFAULT_MAX_MB, DeadLetter
from lunettes.sources.errors import BadRecords, LateRecords

DEFAULT_CONFIG_DIR = bundled_config_dir()
_S = 1_000_000
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
    """The processor settings of pipeline.yaml, in microseconds."""

    reorder_window_us: int = 10 * _S
    dedupe_horizon_us: int = 120 * _S
    linger_us: int = 5 * _S
    timeout_us: int = 2100 * _S
    forget_us: int = 2100 * _S
    trace_annotations: tuple[str, ...] = TRACE_ANNOTATIONS
    max_future_us: int = 300 * _S
    """Records further ahead of the audit clock are quarantined (0: never)."""
    dead_letter: str | None = None
    """Where every bad (and late) record is written, with where it was and why (see
    :mod:`lunettes.sources.deadletter`); relative to the config directory."""
    dead_letter_max_mb: float = DEFAULT_MAX_MB

    @classmethod
    def from_config(cls, top: Section) -> Settings:
        source, pods = top.sub("input"), top.sub("pods")
        default = cls()

        def seconds(section: Section, key: str, fallback_us: int) -> int:
            value = section.get(key, fallback_us / _S, float)
            if value < 0:
                section.problem(key, "must not be negative")
            return int(value * _S)

        settings = cls(
            reorder_window_us=seconds(source, "reorder_window_s", default.reorder_window_us),
            dedupe_horizon_us=seconds(source, "dedupe_horizon_s", default.dedupe_horizon_us),
            linger_us=seconds(pods, "linger_s", default.linger_us),
            timeout_us=seconds(pods, "timeout_s", default.timeout_us),
            forget_us=seconds(pods, "forget_after_s", default.forget_us),
            trace_annotations=tuple(pods.get("trace_context_annotations",
                                             list(default.trace_annotations), list)),
            max_future_us=seconds(source, "max_future_s", default.max_future_us),
            dead_letter=source.get("dead_letter", None, str),
            dead_letter_max_mb=source.get("dead_letter_max_mb", DEFAULT_MAX_MB, float),
        )
        if settings.dead_letter_max_mb <= 0:
            source.problem("dead_letter_max_mb", "must be positive")
        if not all(isinstance(key, str) and key for key in settings.trace_annotations):
            pods.problem("trace_context_annotations", "must be a list of annotation keys")
        source.check_unknown()
        pods.check_unknown()
        return settings


def build_sinks(section: Section, context: BuildContext) -> list[Sink]:
    """One sink per key of the ``sinks`` section (``type`` or ``type/name``)."""
    return registry.build_section(registry.SINKS, section, context)


def load_config(config_dir: Path) -> dict[str, Any]:
    """The parsed pipeline.yaml of a config directory."""
    data = read_yaml(config_dir / "pipeline.yaml")
    return data if data is not None else {}


class Pipeline:
    """Records in, pod records out: dedupe -> reorder window -> fold -> analyzer DAG -> sinks.

    Build it with :meth:`from_config` (validates everything, reports all problems at once)
    or directly for embedding. ``on_record`` is called with each final pod record.
    ``sources`` (from the ``sources:`` section) are what :meth:`run` reads when it is given
    no records; their bad input is counted in ``bad``.
    """

    def __init__(self, dag: AnalyzerDAG, sinks: list[Sink], settings: Settings | None = None,
                 batch_size: int = 500, sources: list[Source] | None = None,
                 bad: BadRecords | None = None) -> None:
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
        self.checkpoints: Checkpointer | None = None
        """Writes checkpoints while the pipeline runs (see
        :mod:`lunettes.processors.checkpoint`)."""
        self.restored: Checkpoint | None = None
        """The checkpoint the run resumes from."""
        self._stopping = False
        self.bad = bad if bad is not None else BadRecords()
        self.late = LateRecords(dead_letter=self.bad.dead_letter)
        """Records behind the reorder window: count and first places."""
        self.settings = settings or Settings()
        self.batch_size = batch_size
        self.stats: Counter[str] = Counter()
        self.newest_us: int | None = None
        """The newest audit timestamp read so far (the audit clock's watermark)."""
        self._folder: Folder | None = None

    @property
    def pods_in_flight(self) -> int:
        """Pods the running pipeline is following now (read-only, for metrics)."""
        folder = self._folder
        return len(folder.live) if folder is not None else 0

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
        path = section.get("path", None, str)
        interval_s = section.get("interval_s", 5.0, float)
        section.check_unknown()
        restored = None
        if path is not None:
            try:
                restored = Checkpoint.load(config_dir / path)
            except ValueError as exc:
                section.problem("path", f"{exc}; move it away to start afresh")
        settings = Settings.from_config(top)
        bad = BadRecords()
        if settings.dead_letter and not problems:
            try:
                bad.dead_letter = DeadLetter(config_dir / settings.dead_letter,
                                             int(settings.dead_letter_max_mb * 2**20))
            except OSError as exc:
                top.sub("input").problem("dead_letter", f"cannot write it: {exc}")
        context = BuildContext(config_dir=config_dir, env=dict(env or {}), bad=bad,
                               resume=dict(restored.positions) if restored else {})
        sources = build_sources(top.sub("sources"), context)
        if path is not None and not all(source.live for source in sources):
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
        pipeline = cls(dag, [*sinks, *extra_sinks], settings, sources=sources,
                       bad=context.bad)
        if path is not None:
            pipeline.checkpoints = Checkpointer(config_dir / path, max(0.0, interval_s))
            pipeline.restored = restored
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
        settings = self.settings
        if settings.max_future_us:
            def quarantine(record: AuditRecord, clock_us: int) -> None:
                if record.stage is not TICK_STAGE:  # another worker's: it counts it
                    ahead = (record.received_us - clock_us) / _S
                    bad.add("future_timestamp", record.origin or "?",
                            f"{format_time(record.received_us)}, {ahead:.0f} s ahead of "
                            f"the audit clock ({format_time(clock_us)})", record=record)
            records = FutureGuard(settings.max_future_us, quarantine).admit(records)
        dedupe = Deduplicator(stats, settings.dedupe_horizon_us)
        window = ReorderWindow(stats, settings.reorder_window_us, self.late.add)
        stage_set = self.stage_set
        folder = Folder(lambda t, e: stage_set.delivered(t.spec, e), stats,
                        linger_us=settings.linger_us, timeout_us=settings.timeout_us,
                        forget_us=settings.forget_us,
                        trace_annotations=settings.trace_annotations, on_bad=bad.add)
        self._folder = folder
        if self.restored is not None:
            folder.restore(self.restored.finished)
        checkpoints = self.checkpoints
        last: dict[str, int] = {}  # lane -> position of the last record read
        batch: list[PodRecord] = []
        now_us = 0

        def finish(timelines: Iterable[PodTimeline]) -> None:
            for timeline in timelines:
                timeline.observed_until_us = now_us
                record = self.record_of(timeline)
                stats[f"outcome:{record.outcome}"] += 1
                batch.append(record)
                if on_record is not None:
                    on_record(record)
                if len(batch) >= self.batch_size:  # the end of input drains in batches too
                    self._export(batch)

        accept, push, add, advance = dedupe.accept, window.push, folder.add, folder.advance
        slim = folder.slim
        for record in records:
            stage = record.stage
            if checkpoints is not None:
                position = record.position
                if position is not None:
                    last[position[0]] = position[1]
                if checkpoints.due():
                    self._export(batch)
                    self._checkpoint(checkpoints, last, window, folder)
            if stage is TICK_STAGE and not record.received_us:
                continue  # a live source's heartbeat: only a chance to checkpoint
            clock_only = stage is TICK_STAGE or stage is SKIPPED_STAGE
            if stage is not TICK_STAGE:  # a tick is another worker's record: not counted
                stats["records"] += 1
                if stage is SKIPPED_STAGE:  # not about a Pod: counted, final ones move the clock
                    stats["skipped"] += 1
                    if not record.received_us:
                        continue
            received = record.received_us
            newest = self.newest_us
            if newest is None or received > newest:
                self.newest_us = received
            if clock_only:
                released = push(record)
            else:
                if not accept(record):
                    continue
                slim(record)
                released = push(record)
            for item in released:
                add(item)
                if item.received_us > now_us:
                    now_us = item.received_us
                done = advance(item.received_us)
                if done:
                    finish(done)
        if self._stopping and checkpoints is not None:  # stopped, not at the end of the
            self._export(batch)  # input: the next run finishes in-flight Pods whole
            for sink in self.sinks:
                sink.force_flush()
            return stats
        for released_item in window.flush():
            add(released_item)
            now_us = max(now_us, released_item.received_us)
            finish(folder.advance(released_item.received_us))
        finish(folder.drain())
        self._export(batch)
        for sink in self.sinks:
            sink.force_flush()
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

    def _checkpoint(self, checkpoints: Checkpointer, last: dict[str, int],
                    window: ReorderWindow, folder: Folder) -> None:
        """Flush the sinks, then write where a restart resumes (see
        :mod:`lunettes.processors.checkpoint`)."""
        lowest = dict(last)
        for item in window.held():
            if item.position is not None:
                lane, n = item.position
                if n < lowest.get(lane, n + 1):
                    lowest[lane] = n
        for lane, n in folder.positions().items():
            if n < lowest.get(lane, n + 1):
                lowest[lane] = n
        positions: dict[str, Any] = {}
        for lane, n in lowest.items():
            for source in self.sources:
                state = source.checkpoint(lane, n)
                if state is not None:
                    positions[lane] = state
                    break
        for sink in self.sinks:
            sink.force_flush()
        checkpoints.write(Checkpoint(positions, folder.finished()))

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
