"""The search side of the fake Elasticsearch (tests/fake_es.py): ``_search`` and
``_count`` over the documents it holds, answering the subset of the query DSL the API's
Elasticsearch reader sends, the way Elasticsearch 8 does:

- queries: ``bool`` (filter, must, must_not), ``term``, ``terms``, ``prefix``, ``range``
  (gte/gt/lte/lt), ``exists``, ``ids``, ``match_all``; dotted field paths;
- ``sort`` on fields with ``order`` and ``missing`` (``_last``/``_first``), date fields
  (``created``, ``finished``, ``last_seen``; audit documents' ``@timestamp`` and
  ``kubernetes.audit.requestReceivedTimestamp``) sorted and compared as epoch ms, as
  the ``date`` type indexes them, and each hit's ``sort`` values; missing values sort as
  Elasticsearch's long sentinels;
- ``search_after``, ``size`` (default 10), ``_source`` includes (a list or
  ``{includes}``, dotted paths);
- ``aggs`` over the matching documents: ``terms`` (``field``, ``size``, ``missing``;
  buckets by count, then key, with ``sum_other_doc_count``), ``filter`` (a query),
  ``percentiles`` (``field``, ``percents``; computed exactly with numpy's linear
  interpolation, where Elasticsearch estimates them with a t-digest: exact for small
  sets) and ``value_count``, nested through ``aggs``.

Anything else answers 400, as Elasticsearch does for a query it cannot parse.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Any

import numpy

DATE_FIELDS = frozenset({"created", "finished", "last_seen", "@timestamp",
                         "kubernetes.audit.requestReceivedTimestamp"})
LONG_MAX = 9223372036854775807
LONG_MIN = -9223372036854775808


class QueryError(ValueError):
    """A query the fake (and so the reader) should never send."""


def _get(source: dict[str, Any], path: str) -> Any:
    value: Any = source
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _millis(value: Any) -> int:
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp() * 1000)


def _comparable(field: str, value: Any) -> Any:
    return _millis(value) if field in DATE_FIELDS and isinstance(value, str) else value


def _matches(query: dict[str, Any], doc_id: str, source: dict[str, Any]) -> bool:
    if len(query) != 1:
        raise QueryError(f"one query kind per object, got {sorted(query)}")
    (kind, spec), = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        unknown = set(spec) - {"filter", "must", "must_not"}
        if unknown:
            raise QueryError(f"bool: unsupported {sorted(unknown)}")
        clauses = [*spec.get("filter", []), *spec.get("must", [])]
        return all(_matches(c, doc_id, source) for c in clauses) and not any(
            _matches(c, doc_id, source) for c in spec.get("must_not", []))
    if kind == "ids":
        return doc_id in spec["values"]
    if kind == "exists":
        return _get(source, spec["field"]) is not None
    (field, arg), = spec.items()
    value = _get(source, field)
    if kind == "term":
        wanted = arg["value"] if isinstance(arg, dict) else arg
        return value is not None and value == wanted
    if kind == "terms":
        if not isinstance(arg, list):
            raise QueryError("terms: a list of values")
        return value is not None and value in arg
    if kind == "prefix":
        wanted = arg["value"] if isinstance(arg, dict) else arg
        return isinstance(value, str) and value.startswith(wanted)
    if kind == "range":
        if value is None:
            return False
        have = _comparable(field, value)
        for op, bound in arg.items():
            limit = _comparable(field, bound)
            if not {"gte": have >= limit, "gt": have > limit, "lte": have <= limit,
                    "lt": have < limit}.get(op, False):
                return False
        return True
    raise QueryError(f"unsupported query {kind!r}")


def _sort_spec(sort: list[Any]) -> list[tuple[str, str, str]]:
    out = []
    for item in sort:
        if isinstance(item, str):
            out.append((item, "asc", "_last"))
            continue
        (field, spec), = item.items()
        if isinstance(spec, str):
            spec = {"order": spec}
        order = spec.get("order", "asc")
        out.append((field, order, spec.get("missing", "_last")))
    return out


def _sort_value(field: str, order: str, missing: str, source: dict[str, Any]) -> Any:
    value = _get(source, field)
    if value is None:
        high = (order == "asc") == (missing == "_last")
        return LONG_MAX if high else LONG_MIN
    return _comparable(field, value)


def _key(values: list[Any], spec: list[tuple[str, str, str]]) -> tuple[Any, ...]:
    """A key that sorts ascending in the requested order (strings vs numbers apart)."""
    key: list[Any] = []
    for value, (_, order, _) in zip(values, spec, strict=True):
        if isinstance(value, str):
            if order == "desc":
                encoded = (*(-ord(c) for c in value), 1)
            else:
                encoded = (*(ord(c) for c in value), -1)
            key.append((1, encoded))
        else:
            key.append((0, -value if order == "desc" else value))
    return tuple(key)


def _include(source: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in paths:
        value = _get(source, path)
        if value is None and path.split(".")[0] not in source:
            continue
        parts = path.split(".")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if _get(source, ".".join(parts[:-1])) is not None or len(parts) == 1:
            target[parts[-1]] = value
    return out


def search(documents: dict[tuple[str, str], dict[str, Any]], target: str,
           body: dict[str, Any]) -> tuple[int, Any]:
    patterns = target.split(",")
    unknown = set(body) - {"query", "sort", "size", "search_after", "_source",
                           "track_total_hits", "from", "aggs", "aggregations"}
    if unknown:
        return 400, _error(f"unknown key(s) {sorted(unknown)} in the search body")
    try:
        hits = [(index, doc_id, source) for (index, doc_id), source in documents.items()
                if any(fnmatch.fnmatchcase(index, p) for p in patterns)
                and _matches(body.get("query", {"match_all": {}}), doc_id, source)]
        spec = _sort_spec(body.get("sort", []))
    except (QueryError, KeyError, TypeError, ValueError) as exc:
        return 400, _error(str(exc))
    rows = []
    for index, doc_id, source in hits:
        values = [_sort_value(f, o, m, source) for f, o, m in spec]
        rows.append((_key(values, spec) if spec else (doc_id,), values, index, doc_id, source))
    rows.sort(key=lambda r: r[0])
    after = body.get("search_after")
    if after is not None:
        if len(after) != len(spec):
            return 400, _error("search_after has to have the same number of values as sort")
        bound = _key(list(after), spec)
        rows = [r for r in rows if r[0] > bound]
    size = int(body.get("size", 10))
    start = int(body.get("from", 0))
    includes = body.get("_source")
    if isinstance(includes, dict):
        includes = includes.get("includes")
    out = []
    for _, values, index, doc_id, source in rows[start:start + size]:
        hit: dict[str, Any] = {"_index": index, "_id": doc_id, "_score": None,
                               "_source": _include(source, includes)
                               if isinstance(includes, list) else source}
        if spec:
            hit["sort"] = values
        out.append(hit)
    answer = {"took": 1, "timed_out": False,
              "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
              "hits": {"max_score": None, "hits": out}}
    aggs = body.get("aggs", body.get("aggregations"))
    if aggs is not None:
        try:
            answer["aggregations"] = _aggregate(aggs, [(d, s) for _, d, s in hits])
        except (QueryError, KeyError, TypeError, ValueError) as exc:
            return 400, _error(f"aggs: {exc}")
    return 200, answer


def _aggregate(aggs: dict[str, Any], docs: list[tuple[str, dict[str, Any]]]
               ) -> dict[str, Any]:
    """Each named aggregation over ``docs`` ((id, source) pairs)."""
    if not isinstance(aggs, dict) or not aggs:
        raise QueryError("aggregations must be a non-empty object")
    out: dict[str, Any] = {}
    for name, spec in aggs.items():
        spec = dict(spec)
        sub = spec.pop("aggs", spec.pop("aggregations", None))
        if len(spec) != 1:
            raise QueryError(f"[{name}]: one aggregation kind, got {sorted(spec)}")
        (kind, arg), = spec.items()
        if kind == "filter":
            if sub is None:
                raise QueryError(f"[{name}]: a filter without sub-aggregations")
            chosen = [(d, s) for d, s in docs if _matches(arg, d, s)]
            out[name] = {"doc_count": len(chosen), **_aggregate(sub, chosen)}
        elif kind == "terms":
            out[name] = _terms(arg, sub, docs)
        elif kind in ("percentiles", "value_count"):
            if sub is not None:
                raise QueryError(f"[{name}]: {kind} takes no sub-aggregations")
            values = _values(arg, docs)
            if kind == "value_count":
                out[name] = {"value": len(values)}
            else:
                out[name] = {"values": _percentiles(arg, values)}
        else:
            raise QueryError(f"[{name}]: unsupported aggregation {kind!r}")
    return out


def _values(arg: dict[str, Any], docs: list[tuple[str, dict[str, Any]]]) -> list[float]:
    unknown = set(arg) - {"field", "percents"}
    if unknown:
        raise QueryError(f"unsupported parameters {sorted(unknown)}")
    values = [_get(source, arg["field"]) for _, source in docs]
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _percentiles(arg: dict[str, Any], values: list[float]) -> dict[str, float | None]:
    percents = [float(p) for p in arg.get("percents", [1, 5, 25, 50, 75, 95, 99])]
    if not values:
        return {str(p): None for p in percents}
    got = numpy.percentile(numpy.array(values), percents)
    return {str(p): float(v) for p, v in zip(percents, got, strict=True)}


def _terms(arg: dict[str, Any], sub: dict[str, Any] | None,
           docs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    unknown = set(arg) - {"field", "size", "missing"}
    if unknown:
        raise QueryError(f"terms: unsupported parameters {sorted(unknown)}")
    groups: dict[Any, list[tuple[str, dict[str, Any]]]] = {}
    for doc_id, source in docs:
        value = _get(source, arg["field"])
        if value is None:
            if "missing" not in arg:
                continue
            value = arg["missing"]
        if isinstance(value, dict | list):
            raise QueryError(f"terms: {arg['field']} is not a keyword")
        groups.setdefault(value, []).append((doc_id, source))
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    size = int(arg.get("size", 10))
    buckets = [{"key": key, "doc_count": len(group),
                **(_aggregate(sub, group) if sub is not None else {})}
               for key, group in ordered[:size]]
    return {"doc_count_error_upper_bound": 0,
            "sum_other_doc_count": sum(len(g) for _, g in ordered[size:]),
            "buckets": buckets}


def count(documents: dict[tuple[str, str], dict[str, Any]], target: str,
          body: dict[str, Any]) -> tuple[int, Any]:
    patterns = target.split(",")
    unknown = set(body) - {"query"}
    if unknown:
        return 400, _error(f"request does not support {sorted(unknown)}")
    query = body.get("query", {"match_all": {}})
    try:
        n = sum(1 for (index, doc_id), source in documents.items()
                if any(fnmatch.fnmatchcase(index, p) for p in patterns)
                and _matches(query, doc_id, source))
    except (QueryError, KeyError, TypeError, ValueError) as exc:
        return 400, _error(str(exc))
    return 200, {"count": n, "_shards": {"total": 1, "successful": 1, "skipped": 0,
                                         "failed": 0}}


def _error(reason: str) -> dict[str, Any]:
    cause = {"type": "parsing_exception", "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": 400}
