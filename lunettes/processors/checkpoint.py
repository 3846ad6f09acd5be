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
spool's, an index's sort values.

The file is JSON, replaced atomically (written aside, fsync'ed, renamed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Checkpoint", "Checkpointer"]

VERSION = 1

Finished = tuple[int, str, str, str]
"""A finished Pod: (when it left memory, µs; uid; namespace; name)."""


@dataclass
class Checkpoint:
    """Source positions by lane, and the Pods finished within the forget horizon."""

    positions: dict[str, Any] = field(default_factory=dict)
    finished: list[Finished] = field(default_factory=list)

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
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"{path}: not a version {VERSION} lunettes checkpoint")
        finished = [(int(a), str(b), str(c), str(d)) for a, b, c, d in data["finished"]]
        return cls(dict(data["positions"]), finished)

    def save(self, path: Path) -> None:
        """Replace ``path`` atomically with this checkpoint."""
        aside = path.with_name(path.name + ".new")
        with open(aside, "wb") as out:
            out.write(orjson.dumps({"version": VERSION, "positions": self.positions,
                                    "finished": self.finished}))
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
