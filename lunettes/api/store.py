"""The read side of the pod-record stores: one interface, two implementations.

:class:`PodStore` is what the API reads. :class:`SQLiteStore` (here) reads the embedded
store the SQLite sink writes; :class:`lunettes.api.es_store.ElasticsearchStore` reads the
``<prefix>-pods-*`` indices the Elasticsearch sink writes. Both answer the same queries the
same way:

- ``get(uid)``: the full record of a Pod, or None;
- ``by_name(namespace, name, limit)``: the incarnations of a Pod name, newest first;
- ``search(query)``: a :class:`Page` of :func:`summary` dicts, sorted, with an opaque
  cursor for the next page (keyset paging: a page costs the same at any depth);
- ``slo_summary(since_us, until_us, namespace, slo_class, limit)``: that summary
  (overall, groups, truncated); the SQLite store computes it in SQL, whatever the number
  of Pods, the Elasticsearch store by aggregations, whatever the number of Pods;
- ``count()`` and ``close()``.

Records are returned as the sinks stored them (``PodRecord.to_dict()``); the API redacts
them before they leave (:mod:`lunettes.model.redact`).
"""

from __future__ import annotations

import base64
import binascii
import copy
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from lunettes.api.slo_summary import DELIVERED, QUANTILES, group_view
from lunettes.api.summary_cache import SummaryCache
from lunettes.model.results import Results
from lunettes.model.times import format_optional
from lunettes.store.sqlite_schema import ensure_schema

__all__ = [
    "SORTS", "InvalidQuery", "Page", "PodQuery", "PodStore", "SQLiteStore",
    "StoreUnavailable",
    "decode_cursor", "encode_cursor",
]

SORTS = ("-created", "created", "-duration", "duration", "name", "-name")
"""Sort orders of a search: by creation time (newest first by default), by duration or
by namespace/name; ties are broken by UID, so paging is stable."""

MAX_LIMIT = 500


class InvalidQuery(ValueError):
    """A query the store cannot answer (a bad cursor, an unknown sort): a 400."""


class StoreUnavailable(RuntimeError):
    """The store cannot be read now (Elasticsearch down): a 503."""


@dataclass(frozen=True, slots=True)
class PodQuery:
    """Filters of a Pod search; None means "any". Times are microseconds since the epoch:
    ``since_us`` inclusive, ``until_us`` exclusive, on the Pod's creation time."""

    namespace: str | None = None
    name_prefix: str | None = None
    uid: str | None = None
    node: str | None = None
    outcome: str | None = None
    slo_result: str | None = None
    slo_class: str | None = None
    reason: str | None = None
    owner_kind: str | None = None
    owner_name: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    sort: str = "-created"
    limit: int = 50
    cursor: str | None = None


@dataclass(slots=True)
class Page:
    """One page of search results and the cursor of the next (None on the last page)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


class PodStore(Protocol):
    """What the API reads; see the module docstring for the contract."""

    kind: str
    results: Results
    """The results the records hold: which play the SLO and diagnosis roles."""

    def get(self, uid: str) -> dict[str, Any] | None: ...

    def by_name(self, namespace: str, name: str, limit: int = 100
                ) -> list[dict[str, Any]]: ...

    def search(self, query: PodQuery) -> Page: ...

    def slo_summary(self, since_us: int | None, until_us: int | None, namespace: str | None,
                    slo_class: str | None, limit: int
                    ) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        """(overall figures, figures by (namespace, class), whether ``limit`` cut the
        Pods short): :mod:`lunettes.api.slo_summary`."""
        ...

    def records(self, since_us: int | None, until_us: int | None, namespace: str | None,
                limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Whole pod records created in [since, until), oldest first, at most ``limit``;
        and whether ``limit`` cut them short."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def encode_cursor(sort: str, values: list[Any]) -> str:
    """An opaque cursor: the sort and the sort values of the last item of a page."""
    raw = orjson.dumps([sort, values])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> list[Any]:
    """The sort values of a cursor made by :func:`encode_cursor` for the same sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_sort, values = orjson.loads(raw)
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise InvalidQuery("cursor: not a cursor this API returned") from exc
    if got_sort != sort or not isinstance(values, list):
        raise InvalidQuery(f"cursor: made for sort={got_sort!r}, not sort={sort!r}; "
                           "start again without a cursor")
    return values


def check_query(query: PodQuery) -> None:
    if query.sort not in SORTS:
        raise InvalidQuery(f"sort: unknown sort {query.sort!r}; supported: {', '.join(SORTS)}")
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit: must be between 1 and {MAX_LIMIT}")
    if (query.since_us is not None and query.until_us is not None
            and query.since_us > query.until_us):
        raise InvalidQuery("since: must not be after until")


def summary(uid: str, namespace: str, name: str, node: str, created: str | None,
            finished: str | None, duration_s: float | None, outcome: str, partial: bool,
            owner_kind: str, owner_name: str, slo_result: str, slo_class: str,
            platform_s: float | None, reason: str) -> dict[str, Any]:
    """One item of a search page: what a list shows of a Pod."""
    return {"uid": uid, "namespace": namespace, "name": name, "node": node,
            "created": created, "finished": finished, "duration_s": duration_s,
            "outcome": outcome, "partial": partial, "owner_kind": owner_kind,
            "owner_name": owner_name, "slo_result": slo_result or None,
            "slo_class": slo_class or None, "platform_s": platform_s,
            "reason": reason or None}


# -- SQLite ------------------------------------------------------------------------------

_SORT_SQL = {  # sort -> (key expression, SQL direction)
    "-created": ("at_us", "DESC"),
    "created": ("at_us", "ASC"),
    "-duration": ("ifnull(duration_s, -1.0)", "DESC"),
    "duration": ("ifnull(duration_s, -1.0)", "ASC"),
    "-name": ("namespace || '/' || name", "DESC"),
    "name": ("namespace || '/' || name", "ASC"),
}

_SUMMARY_INDEX = "INDEXED BY pods_slo_summary"
"""The SLO summary reads this covering index alone (see :mod:`lunettes.store.sqlite_schema`)."""

_CURSOR_TYPES: dict[str, type | tuple[type, ...]] = {
    "at_us": int, "ifnull(duration_s, -1.0)": (int, float), "namespace || '/' || name": str}
"""What a cursor's sort value may be, by sort key (anything else is not our cursor)."""

_SUMMARY_COLUMNS = ("uid, namespace, name, node, created_us, finished_us, duration_s, outcome, "
                    "partial, owner_kind, owner_name, slo_result, slo_class, platform_s, "
                    "reason")

_EQUALS = ("namespace", "uid", "node", "outcome", "slo_result", "slo_class", "reason",
           "owner_kind", "owner_name")


class SQLiteStore:
    """Reads the SQLite store at ``path`` (the file the SQLite sink writes).

    One connection per thread (the API answers in a thread pool), opened on first use,
    read-only once the schema is there (an older store is upgraded first). A store file
    that does not exist yet reads as empty: ``lunettes serve`` may start before the
    first Pod is written.
    """

    kind = "sqlite"

    def __init__(self, path: str | Path, timeout_s: float = 10.0,
                 results: Results | None = None) -> None:
        self.path = Path(path)
        self.results = results or Results()
        """Which results play the SLO and diagnosis roles (to upgrade an older store)."""
        self.timeout_s = timeout_s
        """A query still running after this long is interrupted (a 503 naming it)."""
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._watch: sqlite3.Connection | None = None
        """Only asks ``PRAGMA data_version``: whether anyone wrote since it last asked."""
        self._summaries: SummaryCache[tuple[dict[str, Any], list[dict[str, Any]], bool]] = \
            SummaryCache()

    def _conn(self) -> sqlite3.Connection | None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            return db
        if not self.path.exists():
            return None
        db = sqlite3.connect(str(self.path), timeout=10, check_same_thread=False)
        ensure_schema(db, self.results)
        db.execute("PRAGMA query_only = ON")
        self._local.db = db
        with self._lock:
            self._all.append(db)
        return db

    def _rows(self, sql: str, params: tuple[Any, ...] | list[Any]) -> list[Any]:
        db = self._conn()
        if db is None:
            return []
        deadline = time.monotonic() + self.timeout_s
        db.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise StoreUnavailable(f"the store's query took longer than "
                                       f"{self.timeout_s:g} s; narrow it down") from None
            raise
        finally:
            db.set_progress_handler(None, 0)

    def get(self, uid: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT record FROM pods WHERE uid = ?", (uid,))
        return orjson.loads(rows[0][0]) if rows else None

    def by_name(self, namespace: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._rows("SELECT record FROM pods WHERE namespace = ? AND name = ? "
                          "ORDER BY at_us DESC, uid DESC LIMIT ?", (namespace, name, limit))
        return [orjson.loads(r[0]) for r in rows]

    def search(self, query: PodQuery) -> Page:
        check_query(query)
        where, params = _where(query)
        key, direction = _SORT_SQL[query.sort]
        if query.cursor:
            values = decode_cursor(query.cursor, query.sort)
            if len(values) != 2 or not isinstance(values[1], str) or not isinstance(
                    values[0], _CURSOR_TYPES[key]) or isinstance(values[0], bool) or (
                    isinstance(values[0], int) and not -2**63 <= values[0] < 2**63):
                raise InvalidQuery("cursor: not a cursor this API returned")
            where.append(f"({key}, uid) {'<' if direction == 'DESC' else '>'} (?, ?)")
            params.extend(values)
        sql = (f"SELECT {_SUMMARY_COLUMNS}, {key} FROM pods"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} "
               f"ORDER BY {key} {direction}, uid {direction} LIMIT ?")
        rows = self._rows(sql, [*params, query.limit + 1])
        items = [summary(r[0], r[1], r[2], r[3], format_optional(r[4]), format_optional(r[5]),
                         r[6], r[7], bool(r[8]), r[9], r[10], r[11], r[12], r[13], r[14])
                 for r in rows[:query.limit]]
        cursor = None
        if len(rows) > query.limit:
            last = rows[query.limit - 1]
            cursor = encode_cursor(query.sort, [last[-1], last[0]])
        return Page(items, cursor)

    def version(self) -> int | None:
        """Changes whenever a write was committed to the store (by any connection or
        process) since the last call; None while the store does not exist."""
        with self._lock:
            if self._watch is None:
                if not self.path.exists():
                    return None
                self._watch = sqlite3.connect(str(self.path), timeout=10,
                                              check_same_thread=False)
            return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    def slo_summary(self, since_us: int | None, until_us: int | None, namespace: str | None,
                    slo_class: str | None, limit: int
                    ) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        """The summary in SQL (:meth:`_slo_summary`), computed once per version of the
        store and once for all the calls that ask for it at the same time
        (:class:`~lunettes.api.summary_cache.SummaryCache`). ``limit`` is not needed:
        never truncated."""
        version = self.version()
        if version is None:
            return self._slo_summary(since_us, until_us, namespace, slo_class)
        return copy.deepcopy(self._summaries.get(  # the kept answer stays as computed
            (since_us, until_us, namespace, slo_class), version,
            lambda: self._slo_summary(since_us, until_us, namespace, slo_class)))

    def _slo_summary(self, since_us: int | None, until_us: int | None,
                     namespace: str | None, slo_class: str | None
                     ) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        """Counts by GROUP BY; for each percentile of platform and total time only the two
        values around its rank, overall and by group (a window function ranks the
        delivered Pods in SQLite; Python holds a few rows per group)."""
        where, params = _where(PodQuery(namespace=namespace, slo_class=slo_class,
                                        since_us=since_us, until_us=until_us))
        where.append("slo_result != ''")
        cond = " AND ".join(where)
        counts: dict[tuple[str, str], Counter[str]] = {}
        overall: Counter[str] = Counter()
        for ns, cls, result, n in self._rows(
                f"SELECT namespace, slo_class, slo_result, count(*) FROM pods {_SUMMARY_INDEX} "
                f"WHERE {cond} "
                "GROUP BY namespace, slo_class, slo_result", params):
            counts.setdefault((ns, cls), Counter())[result] += n
            overall[result] += n
        ranked = {column: {by: self._ranked(column, by, cond, params) for by in (True, False)}
                  for column in ("platform_s", "total_s")}
        none: tuple[int, dict[int, float]] = (0, {})

        def view(results: Counter[str], key: tuple[str, str] | None) -> dict[str, Any]:
            grouped = key is not None
            return group_view(results, ranked["platform_s"][grouped].get(key, none),
                              ranked["total_s"][grouped].get(key, none))

        return (view(overall, None),
                [{"namespace": ns, "slo_class": cls, **view(counts[(ns, cls)], (ns, cls))}
                 for ns, cls in sorted(counts)], False)

    def _ranked(self, column: str, grouped: bool, cond: str, params: list[Any]
                ) -> dict[Any, tuple[int, dict[int, float]]]:
        """By (namespace, class) (or None: overall), the number of delivered Pods with a
        ``column`` and their ``column`` values at the ranks of the percentiles (one sort:
        both window functions share one window)."""
        partition = "PARTITION BY namespace, slo_class" if grouped else ""
        ranks = " OR ".join(f"r = CAST({q!r} * (n - 1) AS INTEGER) + {step}"
                            for _, q in QUANTILES for step in (0, 1))
        delivered = ", ".join(f"'{o}'" for o in sorted(DELIVERED))
        sql = (f"SELECT namespace, slo_class, n, r, v FROM ("
               f"SELECT namespace, slo_class, {column} AS v, "
               f"row_number() OVER w - 1 AS r, count(*) OVER (w ROWS BETWEEN UNBOUNDED "
               f"PRECEDING AND UNBOUNDED FOLLOWING) AS n FROM pods {_SUMMARY_INDEX} "
               f"WHERE {cond} AND outcome IN ({delivered}) AND {column} IS NOT NULL "
               f"WINDOW w AS ({partition} ORDER BY {column})) WHERE {ranks}")
        out: dict[Any, tuple[int, dict[int, float]]] = {}
        for ns, cls, n, r, v in self._rows(sql, params):
            key = (ns, cls) if grouped else None
            out.setdefault(key, (n, {}))[1][r] = v
        return out

    def records(self, since_us: int | None, until_us: int | None, namespace: str | None,
                limit: int) -> tuple[list[dict[str, Any]], bool]:
        where, params = _where(PodQuery(namespace=namespace, since_us=since_us,
                                        until_us=until_us))
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(f"SELECT record FROM pods{cond} ORDER BY at_us, uid LIMIT ?",
                          [*params, limit + 1])
        return [orjson.loads(r[0]) for r in rows[:limit]], len(rows) > limit

    def count(self) -> int:
        rows = self._rows("SELECT count(*) FROM pods", ())
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
            if self._watch is not None:
                self._watch.close()
                self._watch = None
        self._local = threading.local()


def _where(query: PodQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column in _EQUALS:
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.name_prefix:
        # A range, not LIKE: it uses the (namespace, name) and (name) indexes.
        where.append("name >= ? AND name < ?")
        params.extend([query.name_prefix, query.name_prefix + "\U0010ffff"])
    if query.since_us is not None:
        where.append("at_us >= ?")
        params.append(query.since_us)
    if query.until_us is not None:
        where.append("at_us < ?")
        params.append(query.until_us)
    return where, params

