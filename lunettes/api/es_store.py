"""ElasticsearchStore: the API's read side over the indices the Elasticsearch sink writes.

It searches ``<prefix>-pods-*`` (every month at once) with the official client's search
API, on the fields :mod:`lunettes.store.es_indices` maps: keyword ``term`` filters,
``prefix`` on the Pod name, a ``range`` on ``created``, sorts with the UID as tie-breaker
and ``search_after`` paging (the cursor carries the last hit's sort values). SLO summaries
page through the window the same way, reading only the SLO fields. Needs the
``elasticsearch`` extra; connection and authentication come from the pipeline's
``elasticsearch`` sink section (:meth:`ElasticsearchStore.from_sink`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import elastic_transport
from elasticsearch import ApiError, Elasticsearch

from lunettes.analyzers.base import DIAGNOSIS, SLO
from lunettes.api.slo_summary import DELIVERED, QUANTILES, RESULTS, figures
from lunettes.api.store import (
    InvalidQuery,
    Page,
    PodQuery,
    StoreUnavailable,
    check_query,
    decode_cursor,
    encode_cursor,
    summary,
)
from lunettes.model.results import Results
from lunettes.model.times import format_time
from lunettes.registry import default_results
from lunettes.store.es_indices import PODS, index_pattern

__all__ = ["ElasticsearchStore"]

class SinkSettings(Protocol):
    """Where an Elasticsearch sink writes (:class:`lunettes.sinks.elasticsearch.ElasticsearchSink`
    built from its pipeline.yaml section): the reader connects the same way."""

    hosts: list[str]
    index_prefix: str
    api_key: str | None
    basic_auth: tuple[str, str] | None
    ca_certs: str | None
    verify_certs: bool | None
    client_options: dict[str, Any]
    results: Results | None


_SORTS: dict[str, list[dict[str, Any]]] = {
    "-created": [{"created": {"order": "desc", "missing": "_last"}}, {"uid": "desc"}],
    "created": [{"created": {"order": "asc", "missing": "_first"}}, {"uid": "asc"}],
    "-duration": [{"duration_s": {"order": "desc", "missing": "_last"}}, {"uid": "desc"}],
    "duration": [{"duration_s": {"order": "asc", "missing": "_first"}}, {"uid": "asc"}],
    "-name": [{"namespace": "desc"}, {"name": "desc"}, {"uid": "desc"}],
    "name": [{"namespace": "asc"}, {"name": "asc"}, {"uid": "asc"}],
}
_TERMS = ("namespace", "uid", "node", "outcome", "owner_kind", "owner_name")
"""Query filters on a record field of the same name."""
_SLO_TERMS = {"slo_result": "result", "slo_class": "class"}
"""Query filters on a key of the result playing the SLO role."""
_SUMMARY_SOURCE = ["uid", "namespace", "name", "node", "created", "finished", "duration_s",
                   "outcome", "partial", "owner_kind", "owner_name"]


class _Keys:
    """The document fields of the results playing the SLO and diagnosis roles."""

    def __init__(self, results: Results) -> None:
        self.slo, self.diagnosis = results.key(SLO), results.key(DIAGNOSIS)
        self.terms = {**{name: name for name in _TERMS},
                      **{name: f"{self.slo}.{key}" for name, key in _SLO_TERMS.items()},
                      "reason": f"{self.diagnosis}.reason"}
        self.summary_source = [*_SUMMARY_SOURCE, f"{self.slo}.result", f"{self.slo}.class",
                               f"{self.slo}.platform_s", f"{self.diagnosis}.reason"]
_PAGE = 2000


class ElasticsearchStore:
    """Reads pod records from ``<index_prefix>-pods-*``; see the module docstring.

    ``client_options`` are extra ``Elasticsearch(...)`` arguments (tests, embedding).
    Connection failures and Elasticsearch errors raise :class:`StoreUnavailable`.
    """

    kind = "elasticsearch"

    def __init__(self, hosts: Sequence[str], *, index_prefix: str = "lunettes",
                 api_key: str | None = None, basic_auth: tuple[str, str] | None = None,
                 ca_certs: str | None = None, verify_certs: bool | None = None,
                 timeout_s: float = 10.0, client_options: dict[str, Any] | None = None,
                 results: Results | None = None) -> None:
        options: dict[str, Any] = {"request_timeout": timeout_s, "max_retries": 1,
                                   "retry_on_timeout": False}
        for key, value in (("api_key", api_key), ("basic_auth", basic_auth),
                           ("ca_certs", ca_certs), ("verify_certs", verify_certs)):
            if value is not None:
                options[key] = value
        options.update(client_options or {})
        self.hosts = list(hosts)
        self.index_prefix = index_prefix
        self.index = index_pattern(index_prefix, PODS)
        self.results = results or default_results()
        """The results the documents hold: which play the SLO and diagnosis roles."""
        self._es = Elasticsearch(self.hosts, **options)

    @classmethod
    def from_sink(cls, sink: SinkSettings, timeout_s: float = 10.0) -> ElasticsearchStore:
        """A reader of what ``sink`` (built from its pipeline.yaml section) writes."""
        return cls(sink.hosts, index_prefix=sink.index_prefix, api_key=sink.api_key,
                   basic_auth=sink.basic_auth, ca_certs=sink.ca_certs,
                   verify_certs=sink.verify_certs, timeout_s=timeout_s,
                   client_options=sink.client_options, results=sink.results)

    def _search(self, **body: Any) -> list[dict[str, Any]]:
        answer = self._call(lambda: self._es.search(
            index=self.index, ignore_unavailable=True, allow_no_indices=True,
            track_total_hits=False, **body))
        return list(answer["hits"]["hits"])

    def _call(self, request: Callable[[], Any]) -> Any:
        """A request's answer; its errors as InvalidQuery (400) or StoreUnavailable."""
        try:
            return request()
        except ApiError as exc:
            if exc.meta.status == 400:
                raise InvalidQuery(f"Elasticsearch refused the query: {exc.message}") from None
            raise StoreUnavailable(f"Elasticsearch answered {exc.meta.status}: "
                                   f"{exc.message}") from None
        except elastic_transport.TransportError as exc:
            raise StoreUnavailable(f"Elasticsearch unreachable: {exc.message}") from None

    def get(self, uid: str) -> dict[str, Any] | None:
        hits = self._search(query={"term": {"uid": uid}}, size=1,
                            sort=_SORTS["-created"])
        return dict(hits[0]["_source"]) if hits else None

    def by_name(self, namespace: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
        hits = self._search(query={"bool": {"filter": [{"term": {"namespace": namespace}},
                                                       {"term": {"name": name}}]}},
                            size=limit, sort=_SORTS["-created"])
        return [dict(h["_source"]) for h in hits]

    def search(self, query: PodQuery) -> Page:
        check_query(query)
        keys = _Keys(self.results)
        body: dict[str, Any] = {"query": {"bool": {"filter": _filters(query, keys)}},
                                "sort": _SORTS[query.sort], "size": query.limit + 1,
                                "source": keys.summary_source}
        if query.cursor:
            body["search_after"] = decode_cursor(query.cursor, query.sort)
        hits = self._search(**body)
        items = [_summary(h["_source"], self.results) for h in hits[:query.limit]]
        cursor = None
        if len(hits) > query.limit:
            cursor = encode_cursor(query.sort, list(hits[query.limit - 1]["sort"]))
        return Page(items, cursor)

    def _sources(self, filters: list[dict[str, Any]], limit: int
                 ) -> tuple[list[dict[str, Any]], bool]:
        """The documents ``filters`` match, oldest first, page by page: at most ``limit``,
        and whether there were more."""
        found: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while len(found) <= limit:
            body: dict[str, Any] = {"query": {"bool": {"filter": filters}},
                                    "sort": _SORTS["created"],
                                    "size": min(_PAGE, limit + 1 - len(found))}
            if after is not None:
                body["search_after"] = after
            hits = self._search(**body)
            found.extend(hit["_source"] for hit in hits)
            if len(hits) < body["size"]:
                break
            after = list(hits[-1]["sort"])
        return found[:limit], len(found) > limit

    def records(self, since_us: int | None, until_us: int | None, namespace: str | None,
                limit: int) -> tuple[list[dict[str, Any]], bool]:
        filters = _filters(PodQuery(namespace=namespace, since_us=since_us,
                                    until_us=until_us), _Keys(self.results))
        sources, truncated = self._sources(filters, limit)
        return [dict(source) for source in sources], truncated

    def slo_summary(self, since_us: int | None, until_us: int | None, namespace: str | None,
                    slo_class: str | None, limit: int
                    ) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
        """The summary computed by Elasticsearch in one search of no hits: counts by
        result (``terms``) and the percentiles of the delivered Pods' times
        (``percentiles`` and ``value_count`` in a ``filter``), overall and for each
        (namespace, class) bucket; work and answer bounded by the number of groups
        (:data:`MAX_NAMESPACES` x :data:`MAX_CLASSES`, ``truncated`` when more), never
        by the number of Pods (``limit`` is not needed). Elasticsearch estimates
        percentiles (t-digest: exact for small groups, close otherwise)."""
        keys = _Keys(self.results)
        filters = _filters(PodQuery(namespace=namespace, slo_class=slo_class,
                                    since_us=since_us, until_us=until_us), keys)
        filters.append({"exists": {"field": f"{keys.slo}.result"}})
        figures_aggs = _figures_aggs(keys.slo)
        aggs = {**figures_aggs, "namespaces": {
            "terms": {"field": "namespace", "size": MAX_NAMESPACES},
            "aggs": {"classes": {
                "terms": {"field": f"{keys.slo}.class", "size": MAX_CLASSES, "missing": ""},
                "aggs": figures_aggs}}}}
        answer = self._call(lambda: self._es.search(
            index=self.index, ignore_unavailable=True, allow_no_indices=True,
            track_total_hits=False, size=0, query={"bool": {"filter": filters}}, aggs=aggs))
        found = answer.get("aggregations") or {}
        namespaces = found.get("namespaces") or {"buckets": [], "sum_other_doc_count": 0}
        truncated = bool(namespaces["sum_other_doc_count"])
        groups: list[dict[str, Any]] = []
        for ns in namespaces["buckets"]:
            truncated |= bool(ns["classes"]["sum_other_doc_count"])
            groups.extend({"namespace": str(ns["key"]), "slo_class": str(cls["key"]),
                           **_figures(cls)} for cls in ns["classes"]["buckets"])
        groups.sort(key=lambda g: (g["namespace"], g["slo_class"]))
        overall = _figures(found) if found else figures(Counter(), 0, _NO_QUANTILES,
                                                        _NO_QUANTILES)
        return overall, groups, truncated

    def count(self) -> int:
        try:
            answer = self._es.count(index=self.index, ignore_unavailable=True,
                                    allow_no_indices=True)
        except (ApiError, elastic_transport.TransportError) as exc:
            raise StoreUnavailable(f"Elasticsearch: {exc}") from None
        return int(answer["count"])

    def close(self) -> None:
        self._es.close()


MAX_NAMESPACES = 1000
"""Namespaces one SLO summary shows at most (the most populated)."""
MAX_CLASSES = 100
"""SLO classes per namespace one SLO summary shows at most."""
_PERCENTS = {name: round(q * 100, 6) for name, q in QUANTILES}
_NO_QUANTILES: dict[str, float | None] = {name: None for name in _PERCENTS}


def _figures_aggs(slo: str) -> dict[str, Any]:
    """The aggregations of one group's figures, the SLO result under ``slo``."""
    times = {f"{name}_{stat}": {stat: {"field": f"{slo}.{name}_s", **(
        {"percents": list(_PERCENTS.values())} if stat == "percentiles" else {})}}
        for name in ("platform", "total") for stat in ("percentiles", "value_count")}
    return {"results": {"terms": {"field": f"{slo}.result", "size": 2 * len(RESULTS)}},
            "delivered": {"filter": {"terms": {"outcome": sorted(DELIVERED)}},
                          "aggs": times}}


def _figures(bucket: dict[str, Any]) -> dict[str, Any]:
    """One group's figures from its aggregations (:func:`_figures_aggs`)."""
    results = Counter({str(b["key"]): int(b["doc_count"])
                       for b in bucket["results"]["buckets"]})
    delivered = bucket["delivered"]

    def quantiles(name: str) -> dict[str, float | None]:
        if not delivered[f"{name}_value_count"]["value"]:
            return dict(_NO_QUANTILES)
        values = delivered[f"{name}_percentiles"]["values"]
        return {key: _float(values.get(str(float(p)))) for key, p in _PERCENTS.items()}

    return figures(results, int(delivered["platform_value_count"]["value"]),
                   quantiles("platform"), quantiles("total"))


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _filters(query: PodQuery, keys: _Keys) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = []
    for attribute, field in keys.terms.items():
        value = getattr(query, attribute)
        if value is not None:
            filters.append({"term": {field: value}})
    if query.name_prefix:
        filters.append({"prefix": {"name": query.name_prefix}})
    window: dict[str, str] = {}
    if query.since_us is not None:
        window["gte"] = format_time(query.since_us)
    if query.until_us is not None:
        window["lt"] = format_time(query.until_us)
    if window:
        filters.append({"range": {"created": window}})
    return filters


def _summary(source: dict[str, Any], results: Results) -> dict[str, Any]:
    slo, diagnosis = results.get(source, SLO), results.get(source, DIAGNOSIS)
    return summary(str(source.get("uid", "")), str(source.get("namespace", "")),
                   str(source.get("name", "")), str(source.get("node", "")),
                   source.get("created"), source.get("finished"),
                   _float(source.get("duration_s")), str(source.get("outcome", "")),
                   bool(source.get("partial")), str(source.get("owner_kind", "")),
                   str(source.get("owner_name", "")), str(slo.get("result") or ""),
                   str(slo.get("class") or ""), _float(slo.get("platform_s")),
                   str(diagnosis.get("reason") or ""))
