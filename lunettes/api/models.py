"""The shapes the API answers with: its OpenAPI schemas.

They mirror ``PodRecord.to_dict()`` and the analyzers' results; records may carry more
(another analyzer's output), which the models let through (``extra="allow"``) after
redaction. Times are RFC 3339 strings with microseconds, durations seconds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class StageModel(_Open):
    """A stage; one with warning Events also has ``events`` (time, name, message,
    attributes), left out of the schema so that stages without any keep their shape."""

    name: str
    instance: str = ""
    instance_kind: str = ""
    owner: str = Field(description="platform or user: who owns the stage (stages.yaml)")
    start: str | None
    end: str | None = Field(description="None while the stage is open")
    duration_s: float | None
    effective_owner: str = Field("", description="who owns most of the stage's time by "
                                 "the SLO's account (a platform stage spent on a user "
                                 "fault is the user's)")
    user_s: float = Field(0.0, description="seconds of the stage the SLO counts as user time")
    user_intervals: list[list[str]] = Field(default_factory=list, description="those "
                                            "parts of the stage, as [start, end] pairs")


class EvidenceModel(_Open):
    time: str | None = None
    source: str = ""
    audit_id: str = ""
    op: str = ""
    reason: str = ""
    message: str = ""
    container: str = ""


class DiagnosisModel(_Open):
    reason: str | None = Field(None, description="a reason code (see /api/v1/reasons), "
                                                 "None for a Pod delivered without trouble")
    stage: str = ""
    owner: str = ""
    message: str = ""
    hint: str = ""
    so_far: bool = False
    last_stage: str = ""
    evidence: list[EvidenceModel] = []
    secondary: list[dict[str, Any]] = []


class SLOModel(_Open):
    result: str = Field(description="met, violated, killed, in_progress or not_applicable")
    why: str = ""
    class_: str | None = Field(None, alias="class")
    deadline_s: float | None = None
    total_s: float | None = None
    user_s: float | None = None
    platform_s: float | None = None
    delivered: bool | None = None
    pod_start_sli_s: float | None = None
    user_intervals: list[list[str | None]] = []

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Links(BaseModel):
    self: str
    trace: str
    jaeger: str | None = Field(None, description="the trace in Jaeger (--jaeger-url)")


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


class PodModel(_PodIdentity, _Open):
    uid_derived: bool
    last_seen: str | None = None
    stages: list[StageModel]
    diagnosis: DiagnosisModel | None = None
    slo: SLOModel | None = None
    links: Links


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


class Incarnations(BaseModel):
    namespace: str
    name: str
    items: list[PodModel] = Field(description="newest first")


class StagesAnswer(BaseModel):
    uid: str
    stages: list[StageModel]


class DiagnosisAnswer(BaseModel):
    uid: str
    diagnosis: DiagnosisModel | None


class SLOAnswer(BaseModel):
    uid: str
    slo: SLOModel | None


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


class Info(BaseModel):
    store: str
    pods: int
    jaeger_url: str | None
    auth: bool
    version: str
