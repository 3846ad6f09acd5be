"""A run continues where the last one into the same store ended: Pods in flight carried over.

Two rotated halves of a log replayed in separate runs into one SQLite store must give the
store of one pass. At the end of its input a run writes the Pods it still follows (the
folder's state: their timelines, names, Pods finished within the forget horizon, Event
names) and the deduplicator's recent audit IDs, with its audit clock, into the store's
``carried_state`` table (one row per ``key``: a single process, or one worker of
``--workers N``); it still writes those Pods' records as the input left them (``end_of_input``).

The next run into that store takes the state back if its input continues the last one: its
first record about a Pod is not older than that clock minus the reorder window (the
``dedupe`` processor decides, as that record arrives, and takes its audit IDs back; the
``fold`` processor its Pods, before it folds that record). The carried
Pods are then followed on as one pass would: they time out when its audit clock passes
their timeout, records after the cut extend them, duplicates across the cut are dropped,
and their final records replace the ``end_of_input`` ones (the store merges by
completeness). A run whose input starts earlier (an older file, the same log again) leaves
the state aside; a run that ends earlier than the stored clock does not replace it.

The state is pickled (it holds only what the folder built from the audit records: no
bodies beyond a Pod's spec summary, messages already redacted) and is read back only from
the store's own table, by the same lunettes :data:`FORMAT`; another format is ignored.
Reading it back constructs nothing but lunettes' own model and processor classes and a
deque (:class:`_Unpickler`): a store someone else wrote cannot make the next run call
anything else; a state refused or unreadable is set aside with the reason
(:attr:`CarryStore.refused`) and the run starts afresh.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickle
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lunettes import __version__
from lunettes.private_files import create_private

__all__ = ["FORMAT", "Carried", "CarryRun", "CarryStore"]

log = logging.getLogger(__name__)

FORMAT = f"lunettes {__version__} carry 1"
_TABLE = ("CREATE TABLE IF NOT EXISTS carried_state (key TEXT PRIMARY KEY, "
          "clock_us INTEGER NOT NULL, format TEXT NOT NULL, state BLOB NOT NULL)")


@dataclass
class Carried:
    """What a run hands to the next: its audit clock, the folder's and the
    deduplicator's state."""

    clock_us: int
    folder: dict[str, Any]
    dedupe: dict[str, Any]


def _read_only(items: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(items)


class _Pickler(pickle.Pickler):
    """Pickles the read-only mappings of HyperEvents (``extra``) as what they hold."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is MappingProxyType:
            return _read_only, (dict(obj),)
        return NotImplemented


_CLASSES = ("lunettes.model.", "lunettes.processors.")


class _Unpickler(pickle.Unpickler):
    """Finds only what :class:`_Pickler` writes: classes defined in lunettes' model and
    processors packages, a deque and :func:`_read_only`; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "deque"):
            return deque
        if (module, name) == (__name__, "_read_only"):
            return _read_only
        if module.startswith(_CLASSES):
            found = getattr(importlib.import_module(module), name, None)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a carried state")


def _dumps(value: Any) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return out.getvalue()


class CarryStore:
    """The ``carried_state`` row ``key`` of the SQLite store at ``path``."""

    def __init__(self, path: str | Path, key: str = "single") -> None:
        self.path = Path(path)
        self.key = key
        self.refused: str | None = None
        """Why the stored state was set aside by :meth:`load` (None: it was not)."""

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        create_private(self.path)
        db = sqlite3.connect(str(self.path), timeout=60, isolation_level="IMMEDIATE")
        db.execute(_TABLE)
        return db

    def load(self) -> Carried | None:
        """The state the last run left, None when there is none of this format."""
        if not self.path.exists():
            return None
        db = self._connect()
        try:
            row = db.execute("SELECT format, state FROM carried_state WHERE key = ?",
                             (self.key,)).fetchone()
        finally:
            db.close()
        if row is None or row[0] != FORMAT:
            return None
        try:
            carried = _Unpickler(io.BytesIO(row[1])).load()
        except Exception as error:  # any damage: set aside, never run on it
            why = f"{type(error).__name__}: {error}"
        else:
            if isinstance(carried, Carried):
                return carried
            why = f"it holds a {type(carried).__name__}"
        self.refused = why
        log.warning("%s: the Pods carried from the last run are set aside (%s); this run "
                    "starts afresh", self.path, why)
        return None

    def save(self, carried: Carried) -> bool:
        """Store ``carried`` unless the stored state is from further in the audit time;
        True when stored."""
        state = _dumps(carried)
        db = self._connect()
        try:
            with db:
                row = db.execute("SELECT clock_us, format FROM carried_state WHERE key = ?",
                                 (self.key,)).fetchone()
                if row is not None and row[1] == FORMAT and row[0] > carried.clock_us:
                    return False
                db.execute("INSERT OR REPLACE INTO carried_state VALUES (?, ?, ?, ?)",
                           (self.key, carried.clock_us, FORMAT, state))
            return True
        finally:
            db.close()


class CarryRun:
    """One run's side of the carry (``Run.carry``): the state the last run left (None:
    none), whether this input continues it (:meth:`decide`), and the saving of this run's
    state at the end of its input (:meth:`save`)."""

    def __init__(self, store: CarryStore, tolerance_us: int) -> None:
        self.store = store
        self.tolerance_us = tolerance_us
        self.carried = store.load()
        self.go: bool | None = None if self.carried is not None else False
        """Whether the carried state is taken back; None until the first record about a
        Pod arrives."""
        self.dedupe: dict[str, Any] = {"seen": set(), "order": deque(), "newest": 0}
        """The deduplicator's state at the end of the input (set by ``dedupe``)."""

    def decide(self, received_us: int) -> bool:
        """Called with the time of the first record about a Pod: True when the carried
        state is to be taken back (the input continues the last run's)."""
        if self.go is None:
            assert self.carried is not None
            self.go = received_us >= self.carried.clock_us - self.tolerance_us
        return self.go

    def save(self, clock_us: int, folder: dict[str, Any]) -> None:
        """Store this run's state (``fold`` calls it before it drains its Pods)."""
        self.store.save(Carried(clock_us, folder, self.dedupe))
