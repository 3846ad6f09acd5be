"""The read-only API under ``/api/v1``: Pods, their stages, diagnosis, SLO and trace, the
SLO summary, the reason codes and the delivery analysis (``lunettes analyze delivery``
over the store). Every answer is redacted (:mod:`lunettes.model.redact`).

Bad parameters answer 400 (or FastAPI's 422 for a value of the wrong type or out of
range), each with a ``detail`` naming the parameter; a Pod the store does not hold
answers 404; a server without a store answers 503 (as does an analysis without the
``analyze`` extra installed).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from lunettes import __version__
from lunettes.analyzers.diagnosisdefs import DiagnosisConfig
from lunettes.api import models
from lunettes.api.auth import BearerAuth
from lunettes.api.load_report import LoadReports, StreamReports
from lunettes.api.store import InvalidQuery, PodQuery, PodStore
from lunettes.api.trace import jaeger_link, trace_of
from lunettes.apiserver import MAX_INTERVALS, SpanTooLong
from lunettes.model.ids import trace_id
from lunettes.model.redact import redact
from lunettes.model.results import Results, ResultSchema
from lunettes.model.times import format_time, parse_time
from lunettes.registry import default_results

__all__ = ["ApiSettings", "api_router"]

PREFIX = "/api/v1"
Outcome = Literal["delivered", "completed", "failed", "deleted", "rejected", "timeout",
                  "in_progress", "unknown"]
SLOResult = Literal["met", "violated", "killed", "in_progress", "not_applicable"]
Sort = Literal["-created", "created", "-duration", "duration", "name", "-name"]
Uid = Annotated[str, Path(description="the Pod's UID", min_length=1, max_length=128)]
Namespace = Annotated[str, Path(min_length=1, max_length=253)]
Name = Annotated[str, Path(min_length=1, max_length=253)]
Text = Annotated[str | None, Query(max_length=253)]
Instant = Annotated[datetime | None, Query(description="RFC 3339, e.g. 2026-01-01T00:00:00Z "
                                                       "(no zone: UTC)")]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH
            ) // timedelta(microseconds=1)


@dataclass
class ApiSettings:
    """What the API reads and links to; everything injected."""

    store: PodStore | None = None
    jaeger_url: str | None = None
    reasons: DiagnosisConfig | None = None
    auth: BearerAuth | None = None
    results: Results = field(default_factory=default_results)
    """The analyzers' results the records hold (their roles and fields); the shipped
    configuration's by default."""
    summary_limit: int = 1_000_000
    """At most this many Pods go into one SLO summary (``truncated`` says when more)."""
    load: LoadReports | StreamReports | None = None
    """The API server load analysis: of what the pipeline counts (``--apiserver-load``),
    or of the audit files ``lunettes serve`` reads."""
    analysis_limit: int = 200_000
    """At most this many Pods go into one delivery analysis (the ``limit`` parameter's
    ceiling)."""


ANALYZE_MODULES = ("numpy", "statsmodels")


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Problem, "description": "a bad parameter"},
    401: {"model": models.Problem, "description": "a bearer token is needed"},
    503: {"model": models.Problem, "description": "no store"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **_PROBLEMS, 404: {"model": models.Problem, "description": "no such Pod in the store"}}


def instant_us(value: datetime | None, name: str) -> int | None:
    """Microseconds of a time (no zone: UTC), or a 400 naming ``name``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        us = (value - _EPOCH) // timedelta(microseconds=1)
    except OverflowError:
        us = None
    if us is None or not _FIRST_US <= us <= _LAST_US:
        raise HTTPException(400, f"{name}: out of range ({value.isoformat()}): in UTC it "
                                 "must fall in the years 1 to 9999")
    return us


def window(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """[since, until) in microseconds, or a 400."""
    since_us, until_us = instant_us(since, "since"), instant_us(until, "until")
    if since_us is not None and until_us is not None and since_us > until_us:
        raise HTTPException(400, "since: must not be after until")
    return since_us, until_us


def api_router(settings: ApiSettings) -> APIRouter:
    """The ``/api/v1`` routes over ``settings``."""
    dependencies = [Depends(settings.auth.dependency())] if settings.auth else []
    router = APIRouter(prefix=PREFIX, dependencies=dependencies, responses=_PROBLEMS)

    def store() -> PodStore:
        if settings.store is None:
            raise HTTPException(503, "this server has no store (started with --no-store)")
        return settings.store

    def links(uid: str) -> dict[str, Any]:
        return {"self": f"{PREFIX}/pods/{uid}", "trace": f"{PREFIX}/pods/{uid}/trace",
                "jaeger": jaeger_link(settings.jaeger_url, trace_id(uid).hex())}

    def pod_view(record: dict[str, Any]) -> dict[str, Any]:
        return {**redact(record), "links": links(str(record["uid"]))}

    def one(uid: str) -> dict[str, Any]:
        record = store().get(uid)
        if record is None:
            raise HTTPException(404, f"no Pod with uid {uid!r} in the store")
        return record

    pods = models.pod_models(settings.results)

    def add_result_route(schema: ResultSchema) -> None:
        """``/pods/{uid}/<name>``: one analyzer's result (None when the record has none)."""
        name = schema.name
        roles = f" (roles: {', '.join(schema.roles)})" if schema.roles else ""

        def get_result(uid: Uid) -> dict[str, Any]:
            return {"uid": uid, name: redact(one(uid).get(name))}

        router.add_api_route(f"/pods/{{uid}}/{name}", get_result, methods=["GET"],
                             response_model=pods.answers[name], responses=_NOT_FOUND,
                             summary=f"A Pod's {name} result{roles}",
                             operation_id=f"get_{name}_result")

    @router.get("/info", response_model=models.Info, summary="What this server serves")
    def info() -> dict[str, Any]:
        current = settings.store
        return {"store": current.kind if current is not None else "none",
                "pods": current.count() if current is not None else 0,
                "jaeger_url": settings.jaeger_url, "auth": settings.auth is not None,
                "version": __version__,
                "results": [{"name": s.name, "roles": list(s.roles), "headline": s.headline}
                            for s in settings.results.schemas]}

    @router.get("/pods", response_model=models.PodPage, summary="List and search Pods",
                description="Filters combine with AND. Times filter on the Pod's creation: "
                            "since inclusive, until exclusive (RFC 3339). Pages are sorted "
                            "(newest first by default); pass next_cursor back as cursor.")
    def list_pods(
        namespace: Text = None,
        name_prefix: Annotated[str | None, Query(max_length=253,
                                                 description="Pod names starting with")] = None,
        uid: Annotated[str | None, Query(max_length=128)] = None,
        node: Text = None,
        outcome: Outcome | None = None,
        slo_result: SLOResult | None = None,
        slo_class: Text = None,
        reason: Annotated[str | None, Query(max_length=128,
                                            description="a diagnosis reason code")] = None,
        owner_kind: Text = None,
        owner_name: Text = None,
        since: Instant = None,
        until: Instant = None,
        sort: Sort = "-created",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> dict[str, Any]:
        query = PodQuery(namespace=namespace, name_prefix=name_prefix, uid=uid, node=node,
                         outcome=outcome, slo_result=slo_result, slo_class=slo_class,
                         reason=reason, owner_kind=owner_kind, owner_name=owner_name,
                         since_us=instant_us(since, "since"),
                         until_us=instant_us(until, "until"), sort=sort, limit=limit,
                         cursor=cursor or None)
        try:
            page = store().search(query)
        except InvalidQuery as exc:
            raise HTTPException(400, str(exc)) from None
        # Summaries hold names, codes, times and numbers, no free text: nothing to redact.
        return {"items": [{**item, "links": links(item["uid"])} for item in page.items],
                "next_cursor": page.next_cursor}

    @router.get("/pods/{uid}", response_model=pods.pod, responses=_NOT_FOUND,
                summary="One Pod by UID: identity, stages and every analyzer's result")
    def get_pod(uid: Uid) -> dict[str, Any]:
        return pod_view(one(uid))

    @router.get("/pods/{uid}/stages", response_model=pods.stages,
                responses=_NOT_FOUND, summary="A Pod's stages (end None: still open)")
    def get_stages(uid: Uid) -> dict[str, Any]:
        record = one(uid)
        return {"uid": uid, "stages": redact(record.get("stages") or [])}

    @router.get("/pods/{uid}/trace", response_model=models.TraceAnswer,
                responses=_NOT_FOUND,
                summary="A Pod's trace as spans, with the ids the OTLP sink exports")
    def get_trace(uid: Uid) -> dict[str, Any]:
        return {"uid": uid, **redact(trace_of(one(uid), settings.jaeger_url,
                                              settings.results))}

    for schema in settings.results.schemas:
        if schema.name not in ("stages", "trace"):
            add_result_route(schema)

    @router.get("/namespaces/{namespace}/pods/{name}", response_model=pods.pod,
                responses=_NOT_FOUND,
                summary="The latest incarnation of a Pod name")
    def get_by_name(namespace: Namespace, name: Name) -> dict[str, Any]:
        found = store().by_name(namespace, name, 1)
        if not found:
            raise HTTPException(404, f"no Pod {namespace}/{name} in the store")
        return pod_view(found[0])

    @router.get("/namespaces/{namespace}/pods/{name}/incarnations",
                response_model=pods.incarnations, responses=_NOT_FOUND,
                summary="Every incarnation of a reused Pod name, newest first")
    def get_incarnations(namespace: Namespace, name: Name,
                         limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        found = store().by_name(namespace, name, limit)
        if not found:
            raise HTTPException(404, f"no Pod {namespace}/{name} in the store")
        return {"namespace": namespace, "name": name, "items": [pod_view(r) for r in found]}

    @router.get("/slo/summary", response_model=models.SLOSummary,
                summary="SLO results and delivery-time percentiles by namespace and class",
                description="Over the Pods created in [since, until) (default: all), "
                            "optionally one namespace or class. success_ratio is met / "
                            "(met + violated); delivery_s are platform-time percentiles "
                            "of the delivered Pods.")
    def slo_summary(
        since: Instant = None,
        until: Instant = None,
        namespace: Text = None,
        slo_class: Text = None,
    ) -> dict[str, Any]:
        since_us, until_us = window(since, until)
        overall, groups, truncated = store().slo_summary(
            since_us, until_us, namespace or None, slo_class or None, settings.summary_limit)
        return {"since": format_time(since_us) if since_us is not None else None,
                "until": format_time(until_us) if until_us is not None else None,
                "namespace": namespace or None, "slo_class": slo_class or None,
                "truncated": truncated, "overall": overall, "groups": redact(groups)}

    @router.get("/analysis/delivery", response_model=models.DeliveryAnalysis,
                summary="Windows where Pod delivery got slower, and what explains them",
                description="lunettes analyze delivery over the store: the delivered Pods "
                            "created in [since, until) (default: all; at most limit, oldest "
                            "first) grouped in intervals of interval_s seconds by creation; "
                            "windows where their mean delivery time leaves its baseline "
                            "(robust z above threshold; seasonal period in intervals, 0: "
                            "none), each with the node, node pool, registry, namespace, "
                            "owner kind and stage that hold the extra seconds.")
    def delivery_analysis(
        since: Instant = None,
        until: Instant = None,
        namespace: Text = None,
        interval_s: Annotated[int, Query(ge=1, le=86_400)] = 300,
        period: Annotated[int, Query(ge=0, le=10_000)] = 0,
        threshold: Annotated[float, Query(gt=0, le=1_000)] = 4.0,
        limit: Annotated[int | None, Query(ge=1, description="Pods read at most (default "
                                                             "and ceiling: the server's)")
                         ] = None,
    ) -> dict[str, Any]:
        since_us, until_us = window(since, until)
        if limit is not None and limit > settings.analysis_limit:
            raise HTTPException(400, f"limit: at most {settings.analysis_limit}")
        missing = [m for m in ANALYZE_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise HTTPException(503, f"the analysis needs {', '.join(missing)}: pip install "
                                     "'lunettes[analyze]'")
        records, truncated = store().records(since_us, until_us, namespace or None,
                                             limit or settings.analysis_limit)
        created = [parse_time(r["created"]) for r in records if r.get("created")]
        if created and (max(created) - min(created)) // (interval_s * 1_000_000) \
                >= MAX_INTERVALS:
            raise HTTPException(400, f"interval_s: these Pods span more than {MAX_INTERVALS} "
                                     "intervals; widen interval_s or narrow since/until")
        from lunettes.apiserver.delivery import analyze_delivery, delivery_json

        try:
            analysis = analyze_delivery(records, interval_s, period, threshold)
        except ValueError as exc:  # a period the series is too short for
            raise HTTPException(400, f"period: {exc}") from None
        return {"since": format_time(since_us) if since_us is not None else None,
                "until": format_time(until_us) if until_us is not None else None,
                "namespace": namespace or None, "read": len(records),
                "truncated": truncated, **redact(delivery_json(analysis))}

    @router.get("/analysis/apiserver", response_model=models.ApiserverLoad,
                responses={**_PROBLEMS, 404: {"model": models.Problem,
                                              "description": "no audit files served and "
                                                             "no --apiserver-load"}},
                summary="API server load of what lunettes serve reads",
                description="lunettes analyze apiserver over the requests lunettes serve "
                            "counts as it reads (--apiserver-load: files, followed logs, the "
                            "webhook, JetStream), or else over the audit files it was given: "
                            "requests per interval, anomalous windows and the clients that "
                            "explain them, slow and rejected requests (top rows per table; "
                            "slow requests with at least min_count). Computed on the first "
                            "ask and kept; refresh=true computes it again (for files, when "
                            "one changed).")
    def apiserver_analysis(
        top: Annotated[int, Query(ge=1, le=1000)] = 10,
        min_count: Annotated[int, Query(ge=1, le=1_000_000_000)] = 5,
        refresh: bool = False,
    ) -> dict[str, Any]:
        if settings.load is None:
            raise HTTPException(404, "this server reads no audit files (no PATH given, or "
                                     "stdin, or only the webhook) and counts no requests: "
                                     "serve --apiserver-load, or run lunettes analyze "
                                     "apiserver PATH...")
        missing = [m for m in ANALYZE_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise HTTPException(503, f"the analysis needs {', '.join(missing)}: pip install "
                                     "'lunettes[analyze]'")
        from lunettes.apiserver.report import to_json

        try:
            analysis, computed_at = settings.load.analysis(refresh)
        except SpanTooLong as exc:
            raise HTTPException(400, f"the requests read: {exc}") from None
        return {"computed_at": computed_at, **redact(to_json(analysis, top, min_count))}

    @router.get("/reasons", response_model=models.ReasonsAnswer,
                summary="The diagnosis reason codes (configs/diagnosis.yaml)")
    def reasons() -> dict[str, Any]:
        config = settings.reasons
        if config is None:
            raise HTTPException(503, "no diagnosis configuration loaded")
        return {
            "reasons": [{"code": c.name, "owner": c.owner, "stage": c.stage, "hint": c.hint,
                         "recovered": c.recovered or None} for c in config.codes.values()],
            "slow": [{"stage": s.stage, "after_s": s.after_us / 1e6, "code": s.code or None}
                     for s in config.slow],
            "no_progress_after_s": config.deadline_us / 1e6,
        }

    return router
