"""Answers computed once per version of the store, and once for all who ask at the same time.

The SLO summary reads every Pod of its window. :class:`SummaryCache` keeps the last
``size`` answers, each with the store's version when it was computed (for SQLite, ``PRAGMA
data_version``: it changes whenever any other connection, in any process, commits a
write), and hands an answer out again while the version is the same. Calls that ask for
the same answer while it is being computed wait for that one computation instead of
starting their own (20 dashboards refreshing at once cost one summary, not 20). Memory is
bounded by ``size`` answers of a few groups each; answers are shared, never to be changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["SummaryCache"]

T = TypeVar("T")


class _Call(Generic[T]):
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class SummaryCache(Generic[T]):
    """The last ``size`` answers by key, valid while the store's version is unchanged."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, tuple[Hashable, T]] = OrderedDict()
        self._running: dict[tuple[Hashable, Hashable], _Call[T]] = {}

    def get(self, key: Hashable, version: Hashable, compute: Callable[[], T]) -> T:
        """The answer for ``key`` at ``version``: kept, being computed (waited for), or
        computed now. An error is raised to every caller that waited for it, and nothing
        is kept."""
        with self._lock:
            kept = self._answers.get(key)
            if kept is not None and kept[0] == version:
                self._answers.move_to_end(key)
                return kept[1]
            call = self._running.get((key, version))
            leader = call is None
            if call is None:
                call = self._running[(key, version)] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value  # type: ignore[return-value]
        try:
            value = call.value = compute()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._running[(key, version)]
                if call.error is None:
                    self._answers[key] = (version, value)
                    self._answers.move_to_end(key)
                    while len(self._answers) > self.size:
                        self._answers.popitem(last=False)
            call.done.set()
        return value
