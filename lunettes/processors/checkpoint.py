"""Checkpoints: where a live pipeline resumes after SIGTERM or kill -9, losing no Pod and
writing none twice.

A checkpoint is not "the last line read": Pods in flight have their state in memory only,
and resuming after their first records would cut them in two. It holds, per source lane
(a followed file, the webhook spool, later a search or a stream partition), the lowest
position of

- the first record of every Pod still in flight (from that lane),
- every record held in the reorder window,
- the last record read,

so that reading again from there re-creates every in-flight Pod whole. Pods finished
before the checkpoint are in the sinks already (the sinks are flushed before it is
written); their UIDs (with namespace, name and when they left memory, within the
``forget_after_s`` horizon) are in the checkpoint, so their trailing records read again
are dropped as they were the first time (``after_final``). Pods that finish between the
checkpoint and a crash are rebuilt from the same records and written again under the same
UID: the sinks' idempotent upsert keeps one record. Positions come from the sources
(:meth:`lunettes.sources.base.Source.checkpoint`): a file's device, inode and offset, the
spool's, an index's sort values; the positions of what processors hold, and the state
they keep, from the processors (:class:`lunettes.processors.base.Processor`).

The file is JSON, replaced atomically (written aside, fsync'ed, renamed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord
from lunettes.processors.base import Run, Stateless

__all__ = ["Checkpoint", "Checkpointer", "Checkpointing"]

VERSION = 2


@dataclass
class Checkpoint:
    """Source positions by lane, and each processor's state by name (the fold's: the Pods
    finished within the forget horizon)."""

    positions: dict[str, Any] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        """The checkpoint in ``path``; None when there is none yet. A damaged file is a
        ValueError naming it."""
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a lunettes checkpoint ({exc})") from exc
        if not isinstance(data, dict) or data.get("version") not in (1, VERSION):
            raise ValueError(f"{path}: not a version {VERSION} lunettes checkpoint")
        states = ({"fold": data["finished"]} if data["version"] == 1
                  else dict(data["processors"]))
        return cls(dict(data["positions"]), states)

    def save(self, path: Path) -> None:
        """Replace ``path`` atomically with this checkpoint."""
        aside = path.with_name(path.name + ".new")
        with open(aside, "wb") as out:
            out.write(orjson.dumps({"version": VERSION, "positions": self.positions,
                                    "processors": self.states}))
            out.flush()
            os.fsync(out.fileno())
        os.replace(aside, path)


class Checkpointer:
    """Writes a checkpoint to ``path`` at most every ``interval_s`` (clock injected)."""

    def __init__(self, path: Path, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.interval_s = interval_s
        self.clock = clock
        self.written = 0
        self._next = clock() + interval_s

    def due(self) -> bool:
        return self.clock() >= self._next

    def write(self, checkpoint: Checkpoint) -> None:
        checkpoint.save(self.path)
        self.written += 1
        self._next = self.clock() + self.interval_s


class Checkpointing(Stateless):
    """The processor of the ``checkpoint`` section (``path``, ``interval_s``): first in
    the chain, it notes the position of each record read; every ``interval_s`` it has
    the pod records finished so far written and the sinks flushed (``run.flush``), then
    writes where a restart resumes (:class:`Checkpoint`). A run it resumes starts with
    the processors' states of :attr:`restored`, and sources resume from its positions.
    A stopped run leaves what the processors hold to the next one (``run.keep_held``).
    """

    def __init__(self, checkpoints: Checkpointer, restored: Checkpoint | None = None,
                 name: str = "checkpoint") -> None:
        self.name = name
        self.checkpoints = checkpoints
        self.restored = restored

    @classmethod
    def from_section(cls, section: Section, config_dir: Path) -> Checkpointing | None:
        """Built from the ``checkpoint`` section; None when it names no ``path``. A
        damaged checkpoint file is a problem of the section."""
        path = section.get("path", None, str)
        interval_s = section.get("interval_s", 5.0, float)
        section.check_unknown()
        if path is None:
            return None
        restored = None
        try:
            restored = Checkpoint.load(config_dir / path)
        except ValueError as exc:
            section.problem("path", f"{exc}; move it away to start afresh")
        return cls(Checkpointer(config_dir / path, max(0.0, interval_s)), restored)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        run.keep_held = True
        if self.restored is not None:
            for processor in run.processors:
                state = self.restored.states.get(processor.name)
                if state is not None:
                    processor.restore(state)
        last: dict[str, int] = {}  # lane -> position of the last record read
        due = self.checkpoints.due
        for record in items:
            position = record.position
            if position is not None:
                last[position[0]] = position[1]
            if due():
                run.flush()
                self._write(run, last)
            yield record

    def _write(self, run: Run, last: dict[str, int]) -> None:
        lowest = dict(last)
        for processor in run.processors:
            for lane, n in processor.held().items():
                if n < lowest.get(lane, n + 1):
                    lowest[lane] = n
        positions: dict[str, Any] = {}
        for lane, n in lowest.items():
            for source in run.sources:
                state = source.checkpoint(lane, n)
                if state is not None:
                    positions[lane] = state
                    break
        states = {p.name: p.state() for p in run.processors}
        self.checkpoints.write(Checkpoint(
            positions, {name: state for name, state in states.items() if state is not None}))
