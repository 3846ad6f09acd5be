"""The shapes the API answers with: its OpenAPI schemas.

A Pod's answers are derived from the fields the pod record and each analyzer's result
declare (:mod:`lunettes.model.schema`, :func:`pod_models`), so the schema lists exactly
what the record holds; records may carry more (an analyzer's undeclared keys), which the
models let through (``extra="allow"``) after redaction. Times are RFC 3339 strings with
microseconds, durations seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic_core import PydanticUndefined

from lunettes.model.results import Results
from lunettes.model.schema import (
    BOOLEAN,
    DATE,
    FLATTENED,
    FLOAT,
    INTEGER,
    KEYWORD,
    NESTED,
    NESTED_TYPES,
    RECORD_FIELDS,
    REQUIRED,
    TEXT,
)
from lunettes.model.schema import Field as SchemaField


class Links(BaseModel):
    self: str
    trace: str
    jaeger: str | None = Field(None, description="the trace in Jaeger (--jaeger-url)")


_VALUE_TYPES: dict[str, Any] = {KEYWORD: str, TEXT: str, DATE: str, FLOAT: float,
                                INTEGER: int, BOOLEAN: bool, FLATTENED: dict[str, Any]}


def _annotation(spec: SchemaField, owner: str) -> Any:
    """The Python type of a field's value (a model of its own for object and nested)."""
    if spec.type in NESTED_TYPES:
        value: Any = model_of(f"{owner}{_camel(spec.name)}", spec.fields, spec.doc)
    else:
        value = _VALUE_TYPES[spec.type]
    if spec.nullable:
        value = value | None
    for _ in range(spec.many or (1 if spec.type == NESTED else 0)):
        value = list[value]
    return value


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _empty(value: Any) -> bool:
    return not value


def model_of(name: str, fields: Iterable[SchemaField], doc: str = "") -> type[BaseModel]:
    """A model of a record's fields (:mod:`lunettes.model.schema`): their types, meanings
    and defaults. Records may carry more (an analyzer's undeclared keys), which the model
    lets through (``extra="allow"``)."""
    definitions: dict[str, Any] = {}
    for spec in fields:
        default = PydanticUndefined if spec.default is REQUIRED else spec.default
        # A field records leave out when empty is left out of the answer too.
        definitions[spec.name] = (_annotation(spec, name), Field(
            default, description=spec.doc or None,
            exclude_if=_empty if spec.omit_empty else None))
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(extra="allow"),
                                          __doc__=doc or None, **definitions)
    return model


@dataclass(frozen=True)
class PodModels:
    """The models of the answers about one Pod for a pipeline's analyzer results: the
    record's fields, then each analyzer's result under its name (None when a record has
    none)."""

    pod: type[BaseModel]
    stages: type[BaseModel]
    incarnations: type[BaseModel]
    results: dict[str, type[BaseModel]]
    """The model of each analyzer's result, by name."""
    answers: dict[str, type[BaseModel]]
    """``{uid, <name>}``: the answer of ``/pods/{uid}/<name>``, by result name."""


def pod_models(results: Results) -> PodModels:
    """The Pod answers' models for ``results`` (:class:`lunettes.model.results.Results`)."""
    by_result = {s.name: model_of(f"{_camel(s.name)}Result", s.fields,
                                  f"The {s.name} analyzer's result"
                                  + (f" (roles: {', '.join(s.roles)})" if s.roles else ""))
                 for s in results.schemas}
    optional: dict[str, Any] = {name: (model | None, None) for name, model in by_result.items()}
    pod: type[BaseModel] = create_model(
        "PodModel", __base__=model_of("PodRecord", RECORD_FIELDS, "A pod record"),
        links=(Links, ...), **optional)
    stages = _annotation(next(f for f in RECORD_FIELDS if f.name == "stages"), "Pod")
    answers = {name: _answer(f"{_camel(name)}Answer", {name: optional[name]})
               for name in by_result}
    return PodModels(
        pod=pod,
        stages=_answer("StagesAnswer", {"stages": (stages, ...)}),
        incarnations=create_model("Incarnations", namespace=(str, ...), name=(str, ...),
                                  items=(list[pod], Field(description="newest first"))),  # type: ignore[valid-type]
        results=by_result, answers=answers)


def _answer(name: str, fields: dict[str, Any]) -> type[BaseModel]:
    """``{uid, **fields}``."""
    return create_model(name, uid=(str, ...), **fields)


class _PodIdentity(BaseModel):
    """The fields a Pod's full record and its search-list item share."""

    uid: str
    namespace: str
    name: str
    node: str
    created: str | None
    finished: str | None
    duration_s: float | None
    outcome: str
    partial: bool
    owner_kind: str
    owner_name: str


class PodSummaryModel(_PodIdentity):
    slo_result: str | None
    slo_class: str | None
    platform_s: float | None
    reason: str | None
    links: Links


class PodPage(BaseModel):
    items: list[PodSummaryModel]
    next_cursor: str | None = Field(description="pass as cursor= for the next page; None "
                                                "on the last")


class SpanEventModel(BaseModel):
    name: str = Field(description="the Event's reason")
    time: str
    time_unix_nano: int
    attributes: dict[str, str | bool | int | float] = Field(
        description="count, k8s.container.name, message, ...")


class SpanLinkModel(BaseModel):
    trace_id: str = Field(description="32 hex digits: the caller's trace")
    span_id: str = Field(description="16 hex digits: the caller's span")
    trace_state: str = ""


class SpanModel(BaseModel):
    trace_id: str = Field(description="32 hex digits: the pod UID")
    span_id: str = Field(description="16 hex digits, from (uid, stage, instance)")
    parent_span_id: str | None
    name: str
    stage: str
    instance: str
    owner: str = Field(description="who owns most of the span's time by the SLO's account")
    start: str
    end: str
    start_unix_nano: int
    end_unix_nano: int
    duration_s: float
    open: bool
    user_intervals_unix_nano: list[list[int]] = Field(
        [], description="the parts of the span the SLO counts as user time")
    status: dict[str, str]
    attributes: dict[str, str | bool | int | float]
    events: list[SpanEventModel] = Field(
        [], description="warning Events in the stage and the diagnosis' evidence, each "
                        "with the audit-id of its audit record")
    links: list[SpanLinkModel] = Field(
        [], description="the span of the caller's trace context (the root only)")


class TraceAnswer(BaseModel):
    uid: str
    trace_id: str
    jaeger_url: str | None
    spans: list[SpanModel]


class Quantiles(BaseModel):
    p50: float | None
    p90: float | None
    p99: float | None


class SLOFigures(BaseModel):
    count: int
    results: dict[str, int]
    success_ratio: float | None = Field(description="met / (met + violated)")
    delivered: int
    delivery_s: Quantiles = Field(description="platform time of the delivered Pods")
    total_s: Quantiles = Field(description="creation to delivery of the delivered Pods")


class SLOGroup(SLOFigures):
    namespace: str
    slo_class: str


class SLOSummary(BaseModel):
    since: str | None
    until: str | None
    namespace: str | None
    slo_class: str | None
    truncated: bool = Field(description="true when the window held more Pods than one "
                                        "summary reads (the figures cover the first ones)")
    overall: SLOFigures
    groups: list[SLOGroup]


class ReasonModel(BaseModel):
    code: str
    owner: str
    stage: str
    hint: str
    recovered: str | None = Field(description="the code reported instead when the Pod got "
                                              "past the stage in the end, but late")


class SlowLimit(BaseModel):
    stage: str
    after_s: float
    code: str | None


class ReasonsAnswer(BaseModel):
    reasons: list[ReasonModel]
    slow: list[SlowLimit]
    no_progress_after_s: float


class DeliverySeries(BaseModel):
    pods: list[int] = Field(description="delivered Pods created in each interval")
    mean_s: list[float] = Field(description="their mean delivery time (an interval "
                                            "without Pods: the median of the others)")
    expected_s: list[float] = Field(description="the baseline of mean_s")


class DeliveryCulprit(BaseModel):
    attributes: dict[str, str] = Field(description="node, node_pool, registry, namespace, "
                                                   "owner_kind and/or stage")
    expected_s: float
    real_s: float
    difference: float = Field(description="extra seconds in the window")
    share: float = Field(description="share of the window's extra seconds it explains")
    purity: float
    surprise: float
    support: float = Field(description="seconds of stage time it holds in the window")


class DeliveryRegression(BaseModel):
    start: str
    end: str
    score: float = Field(description="in [0, 1]")
    mean_s: float
    expected_mean_s: float
    p99_s: float
    reference_p99_s: float = Field(description="p99 outside every window")
    culprits: list[DeliveryCulprit]


class DeliveryAnalysis(BaseModel):
    since: str | None
    until: str | None
    namespace: str | None
    read: int = Field(description="pod records read from the store")
    truncated: bool = Field(description="true when more Pods matched than one analysis "
                                        "reads (limit): the oldest ones were analysed")
    interval_s: int
    pods: int = Field(description="delivered Pods analysed")
    start: str | None
    end: str | None
    series: DeliverySeries
    regressions: list[DeliveryRegression]


class ApiserverLoad(BaseModel):
    """``lunettes analyze apiserver --format json`` of the served audit files."""

    computed_at: str = Field(description="when the analysis was computed (refresh=true "
                                         "computes it again if a file changed)")
    interval_s: int
    start: str | None
    end: str | None
    requests: int
    bad_records: int
    where: dict[str, str]
    guard: dict[str, Any]
    period: int | None
    series: dict[str, list[float]]
    top: dict[str, list[dict[str, Any]]]
    anomalies: list[dict[str, Any]]
    slow: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    apf_queue_wait: list[dict[str, Any]]
    controllers: list[dict[str, Any]]
    unbounded_lists: list[dict[str, Any]]


class Problem(BaseModel):
    detail: str


class ResultInfo(BaseModel):
    name: str = Field(description="the key of the result in a pod record")
    roles: list[str] = Field(description="the roles it plays (slo, diagnosis, ...)")
    headline: str = Field(description="its key the replay table shows, or empty")


class Info(BaseModel):
    store: str
    pods: int
    jaeger_url: str | None
    auth: bool
    version: str
    results: list[ResultInfo] = Field(description="the analyzers' results the records "
                                                  "hold, in DAG order")
