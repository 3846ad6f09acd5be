"""Writes the lunettes Grafana dashboards: grafana/dashboards/*.json.

    python3 grafana/generate.py           # rewrite the dashboards
    python3 grafana/generate.py --check   # exit 1, naming the files, if one is out of date

The dashboards are built with Grafana's own dashboards-as-code library,
grafana-foundation-sdk (typed builders of Grafana's schema: a panel, query or option that
Grafana would not load cannot be built; needs the ``test`` extra, or
``pip install grafana-foundation-sdk``). The JSON files are what Grafana loads
(provisioning/dashboards/lunettes.yaml points at the folder); this script is their source,
so panel ids, grid positions and the shared filters stay consistent. Edit here,
regenerate, commit both. tests/test_grafana.py checks the files are up to date, their
structure, and runs every PromQL query against a real Prometheus scraping ``lunettes
serve``.

Datasources are chosen by datasource variables; their defaults are the uids of
provisioning/datasources/lunettes.yaml. The SDK has no Jaeger query model: the trace
panel's one query is a plain ``{refId, datasource, query}``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import barchart, bargauge, common, heatmap, stat, table
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.builders import elasticsearch as es
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import timeseries as ts
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

# Provisioned datasource uids (provisioning/datasources/lunettes.yaml).
PROMETHEUS_UID = "lunettes-prometheus"
JAEGER_UID = "lunettes-jaeger"
ES_PODS_UID = "lunettes-es-pods"
ES_DIAGNOSES_UID = "lunettes-es-diagnoses"

SLO_UID = "lunettes-pod-slo"
TRACE_UID = "lunettes-pod-trace"
DIAGNOSIS_UID = "lunettes-diagnosis"
CONTROL_PLANE_UID = "lunettes-control-plane"
APISERVER_LOAD_UID = "lunettes-apiserver-load"

PROM = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
JAEGER = dm.DataSourceRef(type_val="jaeger", uid="${jaeger}")
ES_PODS = dm.DataSourceRef(type_val="elasticsearch", uid="${es_pods}")
ES_DIAGNOSES = dm.DataSourceRef(type_val="elasticsearch", uid="${es_diagnoses}")

Json = dict[str, Any]
Panel = cogbuilder.Builder[dm.Panel]
Variable = cogbuilder.Builder[dm.VariableModel]


# -- template variables ------------------------------------------------------------------

def datasource_var(name: str, label: str, plugin: str, uid: str, regex: str = "") -> Variable:
    var = (board.DatasourceVariable(name).label(label).type(plugin)
           .current(dm.VariableOption(text=uid, value=uid)))
    return var.regex(regex) if regex else var


def prom_var(name: str, label: str, query: str, *, multi: bool = True) -> Variable:
    var = (board.QueryVariable(name).label(label).datasource(PROM)
           .query({"query": query, "refId": f"{name}-values"})
           .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
           .sort(dm.VariableSort.ALPHABETICAL_ASC).multi(multi).include_all(multi))
    if multi:
        var = var.all_value(".*").current(dm.VariableOption(text="All", value="$__all"))
    return var


def es_terms_var(name: str, label: str, datasource: dm.DataSourceRef, field: str,
                 query: str = "", *, include_all: bool = False, regex: str = "",
                 hide: dm.VariableHide = dm.VariableHide.DONT_HIDE) -> Variable:
    """A variable listing the values of a keyword field (an Elasticsearch terms query)."""
    find: Json = {"find": "terms", "field": field, "size": 1000}
    if query:
        find["query"] = query
    var = (board.QueryVariable(name).label(label).datasource(datasource)
           .query(json.dumps(find)).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
           .sort(dm.VariableSort.ALPHABETICAL_ASC).hide(hide).include_all(include_all))
    if regex:
        var = var.regex(regex)
    if include_all:
        var = var.all_value("*").current(dm.VariableOption(text="All", value="$__all"))
    return var


def textbox(name: str, label: str, default: str, description: str) -> Variable:
    return (board.TextBoxVariable(name).label(label).description(description)
            .default_value(default).current(dm.VariableOption(text=default, value=default)))


def custom_var(name: str, label: str, values: list[str], description: str) -> Variable:
    return (board.CustomVariable(name).label(label).description(description)
            .values(",".join(values))
            .current(dm.VariableOption(text=values[0], value=values[0]))
            .options([dm.VariableOption(selected=i == 0, text=v, value=v)
                      for i, v in enumerate(values)]))


# -- queries -----------------------------------------------------------------------------

def prom_target(expr: str, legend: str = "", ref: str = "A", *, exemplar: bool = False,
                heatmap_format: bool = False) -> prom.Dataquery:
    query = (prom.Dataquery().ref_id(ref).datasource(PROM).expr(expr)
             .legend_format(legend or "__auto").range().editor_mode("code"))
    if exemplar:
        query = query.exemplar(True)
    if heatmap_format:
        query = query.format("heatmap")
    return query


def es_query(datasource: dm.DataSourceRef, query: str, metrics: list[Any],
             buckets: list[Any]) -> es.Dataquery:
    return (es.Dataquery().ref_id("A").datasource(datasource).query(query).alias("")
            .time_field("created").metrics(metrics).bucket_aggs(buckets))


def es_terms(field: str, aggregation_id: str, size: str) -> es.Terms:
    return (es.Terms().id(aggregation_id).field(field)
            .settings(es.ElasticsearchTermsSettings().size(size).order("desc")
                      .order_by("_count").min_doc_count("1")))


class JaegerQuery(cogbuilder.Builder[UnknownDataquery]):
    """A Jaeger trace-id query (the SDK ships no model for Jaeger's queries)."""

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id

    def build(self) -> UnknownDataquery:
        return UnknownDataquery({"refId": "A", "datasource": JAEGER.to_json(),
                                 "query": self.trace_id})


# -- panels ------------------------------------------------------------------------------

def thresholds(*steps: tuple[float | None, str]) -> board.ThresholdsConfig:
    return (board.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps]))


def last_value() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")


def seconds_series(title: str, targets: list[prom.Dataquery], *, w: int = 12,
                   description: str = "", unit: str = "s", max_value: float | None = None
                   ) -> ts.Panel:
    """A line chart of seconds (or another unit): thin lines, nulls spanned."""
    panel = (ts.Panel().title(title).description(description).datasource(PROM)
             .targets(targets).span(w).height(8).unit(unit).line_width(1).fill_opacity(0)
             .span_nulls(True))
    return panel.max(max_value) if max_value is not None else panel


def stacked(kind: str, panel: ts.Panel) -> ts.Panel:
    """Stacked bars (``bars``) or stacked areas (``lines``)."""
    style = (panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80) if kind == "bars"
             else panel.draw_style(cm.GraphDrawStyle.LINE).fill_opacity(30))
    return style.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))


def big_stat(title: str, target: prom.Dataquery, unit: str, *, w: int = 6,
             description: str = "") -> stat.Panel:
    return (stat.Panel().title(title).description(description).datasource(PROM)
            .with_target(target).span(w).height(5).unit(unit))


def horizontal_bars(title: str, targets: list[prom.Dataquery], unit: str, *, w: int = 8,
                    gradient: bool = True) -> bargauge.Panel:
    mode = cm.BarGaugeDisplayMode.GRADIENT if gradient else cm.BarGaugeDisplayMode.BASIC
    return (bargauge.Panel().title(title).datasource(PROM).targets(targets).span(w)
            .height(8).unit(unit).orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(mode).reduce_options(last_value()))


def link_override(field: str, *links: tuple[str, str]) -> tuple[str, list[dm.DynamicConfigValue]]:
    """Data links on one column of a table."""
    return field, [dm.DynamicConfigValue(id_val="links", value=[
        {"title": title, "url": url, "targetBlank": url.startswith("$")}
        for title, url in links])]


def es_table(title: str, datasource: dm.DataSourceRef, query: str, columns: list[str], *,
             h: int = 8, size: int = 500, description: str = "",
             links: list[tuple[str, list[dm.DynamicConfigValue]]] | None = None) -> table.Panel:
    """A table of raw documents, showing ``columns`` in that order."""
    raw = es.RawData().id("1").settings(es.ElasticsearchRawDataSettings().size(str(size)))
    panel = (table.Panel().title(title).description(description).datasource(datasource)
             .with_target(es_query(datasource, query, [raw], []))
             .span(24).height(h).show_header(True).cell_height(cm.TableCellHeight.SM)
             .footer(common.TableFooterOptions().show(False).reducer(["sum"]).fields(""))
             .sort_by([common.TableSortByFieldState().display_name("created").desc(True)])
             .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
                 "excludeByName": {}, "indexByName": {n: i for i, n in enumerate(columns)},
                 "renameByName": {}, "includeByName": {n: True for n in columns}})))
    for field, properties in links or []:
        panel = panel.override_by_name(field, properties)
    return panel


def dashboard(uid: str, title: str, description: str, variables: list[Variable],
              panels: list[Panel | board.Row], *, time_from: str = "now-6h",
              links: list[board.DashboardLink] | None = None) -> board.Dashboard:
    """A lunettes dashboard: panels laid out left to right, numbered in order."""
    out = (board.Dashboard(title).uid(uid).description(description).tags(["lunettes"])
           .editable().tooltip(dm.DashboardCursorSync.CROSSHAIR).timezone("browser")
           .refresh("1m").time(time_from, "now").variables(variables)
           .link(board.DashboardLink("lunettes").type(dm.DashboardLinkType.DASHBOARDS)
                 .tags(["lunettes"]).as_dropdown(True).keep_time(True)
                 .icon("external link")))
    for link in links or []:
        out = out.link(link)
    for number, item in enumerate(panels, 1):
        item = item.id(number)
        out = out.with_row(item) if isinstance(item, board.Row) else out.with_panel(item)
    return out


def url_link(title: str, url: str) -> board.DashboardLink:
    return (board.DashboardLink(title).type(dm.DashboardLinkType.LINK).icon("external link")
            .url(url).target_blank(True))


# -- Pod delivery SLO (Prometheus) -------------------------------------------------------

def slo_dashboard() -> board.Dashboard:
    sel = 'job=~"$job",namespace=~"$namespace",slo_class=~"$slo_class"'
    cls = 'job=~"$job",slo_class=~"$slo_class"'
    job = 'job=~"$job"'
    results = "lunettes_pod_slo_results_total"
    met = f'{results}{{{sel},result="met"}}'
    bad = f'{results}{{{sel},result="violated"}}'
    valid = f'{results}{{{sel},result=~"met|violated"}}'

    def ratio(window: str, by: str = "") -> str:
        group = f" by ({by})" if by else ""
        return (f"sum{group} (increase({met}[{window}])) / "
                f"sum{group} (increase({valid}[{window}]))")

    def quantiles(metric: str, selector: str) -> list[prom.Dataquery]:
        """p50, p90, p99; the p50 query also fetches the exemplars (one dot per Pod, its
        trace id linked to Jaeger by the datasource's exemplarTraceIdDestinations)."""
        return [prom_target(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket"
                            f"{{{selector}}}[$__rate_interval])))", f"p{int(q * 100)}", ref,
                            exemplar=ref == "A")
                for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))]

    percent = thresholds((None, "red"), (0.95, "orange"), (0.99, "green"))
    variables = [
        datasource_var("datasource", "Prometheus", "prometheus", PROMETHEUS_UID),
        prom_var("job", "Job", "label_values(lunettes_audit_records_read_total, job)",
                 multi=False),
        prom_var("namespace", "Namespace", f"label_values({results}{{{job}}}, namespace)"),
        prom_var("slo_class", "SLO class", f"label_values({results}{{{job}}}, slo_class)"),
        custom_var("objective", "Objective", ["0.99", "0.995", "0.999", "0.95", "0.9"],
                   "The SLO objective: the share of verdicts (met + violated) that must be "
                   "met. Keep it equal to lunettes:pod_slo_objective:ratio of the alerting "
                   "rules (deploy/prometheus/lunettes-rules.yaml)."),
    ]
    panels: list[Panel | board.Row] = [
        board.Row("Delivery SLO"),
        big_stat("SLO success ratio (time range)", prom_target(ratio("$__range")),
                 "percentunit",
                 description="Met / (met + violated) over the dashboard's time range. "
                             "Killed, in-progress and not-applicable verdicts are left out.")
        .thresholds(percent).decimals(2),
        big_stat("Error budget left (time range)",
                 prom_target(f"1 - ((sum(increase({bad}[$__range])) or vector(0)) / "
                             f"sum(increase({valid}[$__range]))) / (1 - $objective)"),
                 "percentunit",
                 description="The share of the error budget (1 - objective) not spent by "
                             "the violations in the time range; negative when overspent.")
        .thresholds(thresholds((None, "red"), (0, "orange"), (0.5, "green"))).decimals(1),
        big_stat("Verdicts (time range)",
                 prom_target(f"sum by (result) (increase({results}{{{sel}}}[$__range]))",
                             "{{result}}"), "short", w=12,
                 description="Pods that got each SLO verdict (met, violated, killed, "
                             "in_progress, not_applicable).")
        .reduce_options(last_value()).text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
        .orientation(cm.VizOrientation.HORIZONTAL),
        seconds_series("SLO success ratio", [
            prom_target(ratio("$__rate_interval"), "success ratio"),
            prom_target("vector($objective)", "objective", "B")], unit="percentunit",
            max_value=1, description="Met / (met + violated) of the verdicts given in each "
                                     "interval, against the objective."),
        seconds_series("SLO success ratio by namespace",
                       [prom_target(ratio("$__rate_interval", "namespace"), "{{namespace}}")],
                       unit="percentunit", max_value=1),
        horizontal_bars("SLO success ratio by class (time range)",
                        [prom_target(ratio("$__range", "slo_class"), "{{slo_class}}")],
                        "percentunit", gradient=False).thresholds(percent).min(0).max(1),
        stacked("bars", ts.Panel().title("Violations by reason").datasource(PROM)
                .description("Violated verdicts by diagnosis reason code (none: no "
                             "finding).").span(8).height(8).unit("short")
                .with_target(prom_target(f"sum by (reason) (increase({bad}"
                                         "[$__rate_interval]))", "{{reason}}"))),
        horizontal_bars("Top violation reasons (time range)",
                        [prom_target(f"topk(10, sum by (reason) (increase({bad}[$__range])))",
                                     "{{reason}}")], "short")
        .links([board.DashboardLink("Diagnosis: the Pods behind these reasons")
                .url(f"/d/{DIAGNOSIS_UID}/diagnosis?${{__url_time_range}}")]),

        board.Row("Delivery time"),
        seconds_series("Delivery time without user time",
                       quantiles("lunettes_pod_delivery_platform_duration_seconds", cls),
                       description="Creation to delivery of delivered Pods minus user time "
                                   "(init containers, readiness probes and gates, user "
                                   "faults)."),
        seconds_series("Delivery time with user time",
                       quantiles("lunettes_pod_delivery_duration_seconds", cls),
                       description="Creation to delivery (Ready, or the terminal phase of "
                                   "Pods that run to completion), everything included."),
        heatmap.Panel().title("Delivery time without user time (heatmap)").datasource(PROM)
        .span(12).height(8).unit("s")
        .with_target(prom_target("sum by (le) (increase(lunettes_pod_delivery_platform_"
                                 f"duration_seconds_bucket{{{cls}}}[$__rate_interval]))",
                                 "{{le}}", heatmap_format=True))
        .calculate(False).y_axis(heatmap.YAxisConfig().unit("s")).cell_gap(1)
        .color(heatmap.HeatmapColorOptions().mode("scheme").scheme("Oranges")
               .exponent(0.5).steps(64))
        .rows_frame(heatmap.RowsHeatmapOptions().layout("auto")).show_tooltip(),
        seconds_series("p90 delivery time without user time, by class",
                       [prom_target("histogram_quantile(0.9, sum by (le, slo_class) (rate("
                                    "lunettes_pod_delivery_platform_duration_seconds_bucket"
                                    f"{{{cls}}}[$__rate_interval])))", "{{slo_class}}",
                                    exemplar=True)]),
        seconds_series("Pod startup SLI (as kubelet_pod_start_sli_duration_seconds)",
                       quantiles("lunettes_pod_start_sli_duration_seconds", job), w=24,
                       description="Creation to all containers started, without image pulls "
                                   "and init containers: the upstream pod startup SLI."),

        board.Row("Stages"),
        seconds_series("p90 stage time by stage",
                       [prom_target("histogram_quantile(0.9, sum by (le, stage) (rate("
                                    f"lunettes_pod_stage_duration_seconds_bucket{{{job},"
                                    'stage!="delivery"}[$__rate_interval])))', "{{stage}}",
                                    exemplar=True)],
                       description="Stages of stages.yaml (the root 'delivery' span left "
                                   "out)."),
        horizontal_bars("Mean stage time (time range)",
                        [prom_target("sum by (stage, owner) (increase(lunettes_pod_stage_"
                                     f'duration_seconds_sum{{{job},stage!="delivery"}}'
                                     "[$__range])) / sum by (stage, owner) (increase("
                                     "lunettes_pod_stage_duration_seconds_count"
                                     f'{{{job},stage!="delivery"}}[$__range]))',
                                     "{{stage}} ({{owner}})")], "s", w=12),
        stacked("lines", ts.Panel().title("Stage time spent, platform vs user")
                .datasource(PROM).span(24).height(8).unit("s")
                .description("Seconds of stage time per second, by who owns the stage.")
                .with_target(prom_target("sum by (owner) (rate(lunettes_pod_stage_duration_"
                                         f'seconds_sum{{{job},stage!="delivery"}}'
                                         "[$__rate_interval]))", "{{owner}}"))),

        board.Row("Pipeline health"),
        big_stat("Audit lag", prom_target(f"max(lunettes_audit_lag_seconds{{{job}}})"), "s",
                 description="Processing clock minus the newest audit timestamp read; only "
                             "meaningful when following a live log.")
        .thresholds(thresholds((None, "green"), (60, "orange"), (300, "red"))),
        big_stat("Pods in flight", prom_target(f"sum(lunettes_pods_in_flight{{{job}}})"),
                 "short"),
        big_stat("Scrape up", prom_target(f"sum(up{{{job}}})"), "short")
        .thresholds(thresholds((None, "red"), (1, "green"))),
        big_stat("Bad records (time range)",
                 prom_target(f"sum(increase(lunettes_audit_bad_records_total{{{job}}}"
                             "[$__range])) or vector(0)"), "short")
        .thresholds(thresholds((None, "green"), (1, "orange"))),
        seconds_series("Audit records read", [
            prom_target(f"sum(rate(lunettes_audit_records_read_total{{{job}}}"
                        "[$__rate_interval]))", "read"),
            prom_target(f"sum(rate(lunettes_audit_duplicate_records_total{{{job}}}"
                        "[$__rate_interval]))", "duplicates", "B")], w=8, unit="reqps"),
        seconds_series("Bad records by reason",
                       [prom_target("sum by (reason) (rate(lunettes_audit_bad_records_total"
                                    f"{{{job}}}[$__rate_interval]))", "{{reason}}")],
                       w=8, unit="reqps"),
        seconds_series("Pod records by outcome",
                       [prom_target(f"sum by (outcome) (rate(lunettes_pods_total{{{job}}}"
                                    "[$__rate_interval]))", "{{outcome}}")],
                       w=8, unit="reqps"),
        seconds_series("Audit lag and pods in flight", [
            prom_target(f"max(lunettes_audit_lag_seconds{{{job}}})", "lag (s)"),
            prom_target(f"sum(lunettes_pods_in_flight{{{job}}})", "pods in flight", "B")],
            w=24, unit="short"),
    ]
    return dashboard(
        SLO_UID, "Pod delivery SLO",
        "lunettes: the Pod delivery SLO (platform time against class deadlines), delivery "
        "and stage times, and the health of the audit-log pipeline.",
        variables, panels)


# -- Pod delivery trace (Jaeger + Elasticsearch) -----------------------------------------

UID_PARTS = (r"/^([0-9a-f]{8})-/", r"/^[0-9a-f]{8}-([0-9a-f]{4})-/",
             r"/^[0-9a-f]{8}-[0-9a-f]{4}-([0-9a-f]{4})-/",
             r"/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-([0-9a-f]{4})-/",
             r"/-([0-9a-f]{12})$/")
TRACE_ID = "".join(f"${{uid_{i}}}" for i in range(1, 6))
"""The trace id of the selected Pod: its UID without dashes (lunettes/model/ids.py).
Grafana has no function to drop the dashes, so five hidden variables capture the UID's
five groups and the Jaeger query joins them."""


def links_vars() -> list[Variable]:
    return [
        textbox("api_url", "lunettes API", "http://localhost:8080",
                "Base URL of lunettes serve, for the /api/v1/pods/{uid} links."),
        textbox("jaeger_url", "Jaeger UI", "http://localhost:16686",
                "Base URL of the Jaeger UI, for links to a Pod's trace."),
    ]


def jaeger_search_url(uid: str) -> str:
    """The Jaeger UI's search for the traces of a Pod (the resource attribute k8s.pod.uid)."""
    return ("${jaeger_url}/search?service=lunettes&limit=20&tags="
            "%7B%22k8s.pod.uid%22%3A%22" + uid + "%22%7D")


def trace_dashboard() -> board.Dashboard:
    pod_query = 'namespace:"$namespace" AND name:"$pod"'
    variables = [
        datasource_var("jaeger", "Jaeger", "jaeger", JAEGER_UID),
        datasource_var("es_pods", "Pods index", "elasticsearch", ES_PODS_UID, "/pods/"),
        datasource_var("es_diagnoses", "Diagnoses index", "elasticsearch",
                       ES_DIAGNOSES_UID, "/diagnos/"),
        es_terms_var("namespace", "Namespace", ES_PODS, "namespace"),
        es_terms_var("pod", "Pod", ES_PODS, "name", 'namespace:"$namespace"'),
        es_terms_var("uid", "UID", ES_PODS, "uid", pod_query),
        *[es_terms_var(f"uid_{i}", f"UID part {i}", ES_PODS, "uid", 'uid:"$uid"',
                       regex=regex, hide=dm.VariableHide.HIDE_VARIABLE)
          for i, regex in enumerate(UID_PARTS, 1)],
        *links_vars(),
    ]
    uid_links = link_override(
        "uid", ("lunettes API: this Pod", "${api_url}/api/v1/pods/${__value.raw}"),
        ("Jaeger UI: this Pod's trace", jaeger_search_url("${__value.raw}")))
    panels: list[Panel | board.Row] = [
        board.Panel().type("traces").title("Delivery trace").datasource(JAEGER)
        .with_target(JaegerQuery(TRACE_ID)).span(24).height(14)
        .description("The Pod's delivery trace: one span per stage, its trace id is the "
                     "Pod UID without dashes."),
        es_table("Diagnosis", ES_DIAGNOSES, 'uid:"$uid"',
                 ["created", "reason", "stage", "owner", "message", "hint", "so_far",
                  "outcome", "slo_result", "slo_class", "uid"], h=5,
                 description="Why the Pod failed or was slow (no row: nothing to explain).",
                 links=[uid_links]),
        es_table("Pod record", ES_PODS, 'uid:"$uid"',
                 ["created", "finished", "namespace", "name", "node", "outcome",
                  "duration_s", "slo.result", "slo.class", "slo.platform_s", "slo.user_s",
                  "slo.deadline_s", "owner_kind", "owner_name", "uid"], h=5,
                 links=[uid_links]),
    ]
    return dashboard(
        TRACE_UID, "Pod delivery trace",
        "lunettes: one Pod's delivery trace (Jaeger) and its diagnosis and pod record "
        "(Elasticsearch). Pick the namespace, the Pod and, when a name was reused, the UID.",
        variables, panels, time_from="now-7d",
        links=[url_link("lunettes API: this Pod", "${api_url}/api/v1/pods/${uid}"),
               url_link("Jaeger UI: this Pod", jaeger_search_url("${uid}"))])


# -- Diagnosis (Elasticsearch) -----------------------------------------------------------

def diagnosis_dashboard() -> board.Dashboard:
    filters = "namespace:$namespace AND reason:$reason AND owner:$owner"
    variables = [
        datasource_var("es_diagnoses", "Diagnoses index", "elasticsearch",
                       ES_DIAGNOSES_UID, "/diagnos/"),
        es_terms_var("namespace", "Namespace", ES_DIAGNOSES, "namespace", include_all=True),
        es_terms_var("reason", "Reason", ES_DIAGNOSES, "reason", include_all=True),
        es_terms_var("owner", "Who must act", ES_DIAGNOSES, "owner", include_all=True),
        *links_vars(),
    ]
    trace_link = (f"/d/{TRACE_UID}/pod-delivery-trace?var-namespace=${{__data.fields.namespace}}"
                  "&var-pod=${__data.fields.name}&var-uid=${__data.fields.uid}"
                  "&${__url_time_range}")

    def count_by(title: str, field: str) -> barchart.Panel:
        return (barchart.Panel().title(title).datasource(ES_DIAGNOSES).span(8).height(8)
                .with_target(es_query(ES_DIAGNOSES, filters, [es.Count().id("1")],
                                      [es_terms(field, "2", "20")]))
                .orientation(cm.VizOrientation.HORIZONTAL).show_value(cm.VisibilityMode.AUTO)
                .x_tick_label_rotation(0)
                .legend(common.VizLegendOptions().show_legend(False)
                        .display_mode(cm.LegendDisplayMode.LIST)
                        .placement(cm.LegendPlacement.BOTTOM).calcs([])))

    over_time = es_query(ES_DIAGNOSES, filters, [es.Count().id("1")], [
        es_terms("owner", "2", "5"),
        es.DateHistogram().id("3").field("created")
        .settings(es.ElasticsearchDateHistogramSettings().interval("auto")
                  .min_doc_count("0"))])
    panels: list[Panel | board.Row] = [
        es_table("Recent failed or slow Pods", ES_DIAGNOSES, filters,
                 ["created", "namespace", "name", "reason", "stage", "owner", "message",
                  "outcome", "slo_result", "slo_class", "node", "uid"], h=14, size=500,
                 description="The newest diagnosed Pods. Click a name for its trace, a UID "
                             "for the lunettes API or the Jaeger UI.",
                 links=[link_override("name", ("Delivery trace of this Pod", trace_link)),
                        link_override("uid", ("lunettes API: this Pod",
                                              "${api_url}/api/v1/pods/${__value.raw}"),
                                      ("Jaeger UI: this Pod's trace",
                                       jaeger_search_url("${__value.raw}")),
                                      ("Delivery trace of this Pod", trace_link))]),
        count_by("Diagnoses by reason", "reason"),
        count_by("Diagnoses by stage", "stage"),
        stacked("bars", ts.Panel().title("Diagnoses over time, by who must act")
                .datasource(ES_DIAGNOSES).with_target(over_time).span(8).height(8)
                .unit("short")),
    ]
    return dashboard(
        DIAGNOSIS_UID, "Diagnosis",
        "lunettes: the Pods that failed or were slow, with the reason code, the stage, who "
        "must act and the message (the diagnoses index).",
        variables, panels, time_from="now-24h")


# -- Control plane (Prometheus: what kube-apiserver exports) ------------------------------

def worst_instance_quantile(q: float, metric: str, selector: str, by: str = "") -> str:
    """The ``q`` quantile of each instance's histogram, then the worst instance: a slow API
    server stays visible (a quantile of the buckets summed over instances, or an average
    of the instances' quantiles, would dilute it with the healthy ones)."""
    labels = f"le, instance, {by}" if by else "le, instance"
    return (f"max without (instance) (histogram_quantile({q}, sum by ({labels}) "
            f"(rate({metric}_bucket{{{selector}}}[$__rate_interval]))))")


def control_plane_dashboard() -> board.Dashboard:
    """Metric and label names as kube-apiserver registers them (k8s.io/apiserver
    pkg/endpoints/metrics, pkg/util/flowcontrol/metrics, pkg/storage/etcd3/metrics)."""
    inst = 'job=~"$job",instance=~"$instance"'
    req = f'{inst},verb=~"$verb",resource=~"$resource"'
    # WATCH and CONNECT (exec, attach, port-forward) last as long as the client wants.
    timed = f'{req},verb!~"WATCH|CONNECT"'
    requests = "apiserver_request_total"
    latency = "apiserver_request_duration_seconds"
    etcd = "etcd_request_duration_seconds"
    apf = "apiserver_flowcontrol"
    job = 'job=~"$job"'
    variables = [
        datasource_var("datasource", "Prometheus", "prometheus", PROMETHEUS_UID),
        prom_var("job", "Job", f"label_values({requests}, job)", multi=False),
        prom_var("instance", "Instance", f"label_values({requests}{{{job}}}, instance)"),
        prom_var("verb", "Verb", f"label_values({requests}{{{job}}}, verb)"),
        prom_var("resource", "Resource", f"label_values({requests}{{{job}}}, resource)"),
    ]
    panels: list[Panel | board.Row] = [
        board.Row("Requests"),
        big_stat("p99 latency, worst instance",
                 prom_target(worst_instance_quantile(0.99, latency, timed)), "s",
                 description="The slowest API server's p99 over non-streaming requests.")
        .thresholds(thresholds((None, "green"), (1, "orange"), (5, "red"))),
        big_stat("Requests per second",
                 prom_target(f"sum(rate({requests}{{{req}}}[$__rate_interval]))"), "reqps"),
        big_stat("Rejected by priority and fairness (time range)",
                 prom_target(f"sum(increase({apf}_rejected_requests_total{{{inst}}}"
                             "[$__range])) or vector(0)"), "short")
        .thresholds(thresholds((None, "green"), (1, "red"))),
        big_stat("Requests in flight",
                 prom_target(f"sum(apiserver_current_inflight_requests{{{inst}}})"), "short",
                 description="Summed over instances: each reports its highest count of the "
                             "last second."),
        stacked("lines", seconds_series(
            "Request rate by verb",
            [prom_target(f"sum by (verb) (rate({requests}{{{req}}}[$__rate_interval]))",
                         "{{verb}}")], w=8, unit="reqps")),
        seconds_series("Request rate by resource (top 10)",
                       [prom_target(f"topk(10, sum by (resource) (rate({requests}{{{req}}}"
                                    "[$__rate_interval])))", "{{resource}}")],
                       w=8, unit="reqps"),
        seconds_series("Errors and throttling by code",
                       [prom_target(f'sum by (code) (rate({requests}{{{req},code=~"5..|429"}}'
                                    "[$__rate_interval]))", "{{code}}")], w=8, unit="reqps",
                       description="Responses 5xx and 429 (too many requests)."),

        board.Row("Latency (never averaged across instances)"),
        seconds_series("p99 latency by verb, worst instance",
                       [prom_target(worst_instance_quantile(0.99, latency, timed, "verb"),
                                    "{{verb}}")],
                       description="Per verb, the p99 of the slowest instance. WATCH and "
                                   "CONNECT left out (they last as long as the client "
                                   "wants)."),
        seconds_series("p99 latency by resource, worst instance (top 10)",
                       [prom_target("topk(10, " + worst_instance_quantile(
                           0.99, latency, timed, "resource") + ")", "{{resource}}")]),
        seconds_series("p99 latency per instance",
                       [prom_target(f"histogram_quantile(0.99, sum by (le, instance) (rate("
                                    f"{latency}_bucket{{{timed}}}[$__rate_interval])))",
                                    "{{instance}}")],
                       description="One line per API server: a slow one stands out."),
        seconds_series("p50 and p99, worst instance",
                       [prom_target(worst_instance_quantile(q, latency, timed),
                                    f"p{int(q * 100)}", ref)
                        for q, ref in ((0.5, "A"), (0.99, "B"))]),

        board.Row("API server vs etcd"),
        seconds_series("p99: API server vs etcd, worst instance", [
            prom_target(worst_instance_quantile(0.99, latency, timed), "API server"),
            prom_target(worst_instance_quantile(0.99, etcd, inst), "etcd", "B")],
            description="The API server's request latency against its own calls to etcd "
                        "(etcd_request_duration_seconds, measured by the API server): "
                        "when both rise, etcd is the bottleneck."),
        seconds_series("etcd p99 by operation and type, worst instance (top 10)",
                       [prom_target("topk(10, " + worst_instance_quantile(
                           0.99, etcd, inst, "operation, type") + ")",
                                    "{{operation}} {{type}}")]),

        board.Row("API Priority and Fairness"),
        stacked("lines", seconds_series(
            "Seats executing by priority level",
            [prom_target(f"sum by (priority_level) ({apf}_current_executing_seats"
                         f"{{{inst}}})", "{{priority_level}}")], w=8, unit="short")),
        seconds_series("Requests executing by priority level",
                       [prom_target(f"sum by (priority_level) ({apf}_current_executing_"
                                    f"requests{{{inst}}})", "{{priority_level}}")],
                       w=8, unit="short"),
        seconds_series("Requests queued by priority level and flow schema",
                       [prom_target(f"sum by (priority_level, flow_schema) ({apf}_current_"
                                    f"inqueue_requests{{{inst}}})",
                                    "{{priority_level}} / {{flow_schema}}")],
                       w=8, unit="short"),
        seconds_series("Rejections by flow schema and priority level",
                       [prom_target(f"sum by (flow_schema, priority_level, reason) (rate("
                                    f"{apf}_rejected_requests_total{{{inst}}}"
                                    "[$__rate_interval]))",
                                    "{{flow_schema}} / {{priority_level}} ({{reason}})")],
                       w=24, unit="reqps",
                       description="Requests priority and fairness refused (429): queue "
                                   "full, concurrency limit, time out in queue."),

        board.Row("Per instance"),
        seconds_series("Requests in flight per instance",
                       [prom_target(f"sum by (instance, request_kind) (apiserver_current_"
                                    f"inflight_requests{{{inst}}})",
                                    "{{instance}} {{request_kind}}")], w=8, unit="short",
                       description="readOnly and mutating requests in flight (each "
                                   "instance's highest of the last second)."),
        seconds_series("Request rate per instance",
                       [prom_target(f"sum by (instance) (rate({requests}{{{req}}}"
                                    "[$__rate_interval]))", "{{instance}}")],
                       w=8, unit="reqps"),
        seconds_series("etcd p99 per instance",
                       [prom_target(f"histogram_quantile(0.99, sum by (le, instance) (rate("
                                    f"{etcd}_bucket{{{inst}}}[$__rate_interval])))",
                                    "{{instance}}")], w=8),
    ]
    return dashboard(
        CONTROL_PLANE_UID, "Control plane",
        "kube-apiserver and its etcd, from the metrics the API server exports: request rate "
        "and latency by verb and resource (quantiles per instance, the worst shown), API "
        "server vs etcd latency, priority and fairness, requests in flight.",
        variables, panels)


# -- API server load (Prometheus: lunettes serve/replay --apiserver-load) ------------------

def apiserver_load_dashboard() -> board.Dashboard:
    """The requests of the audit log, counted by lunettes (lunettes.apiserver.metrics)."""
    job = 'job=~"$job"'
    sel = f'{job},client=~"$client",verb=~"$verb",resource=~"$resource"'
    requests = "lunettes_apiserver_requests_total"
    latency = "lunettes_apiserver_request_duration_seconds"
    rejected = "lunettes_apiserver_rejected_requests_total"
    unbounded = "lunettes_apiserver_unbounded_lists_total"
    lat = f'{job},verb=~"$verb",resource=~"$resource"'
    variables = [
        datasource_var("datasource", "Prometheus", "prometheus", PROMETHEUS_UID),
        prom_var("job", "Job", f"label_values({requests}, job)", multi=False),
        prom_var("client", "Client", f"label_values({requests}{{{job}}}, client)"),
        prom_var("verb", "Verb", f"label_values({requests}{{{job}}}, verb)"),
        prom_var("resource", "Resource", f"label_values({requests}{{{job}}}, resource)"),
    ]
    rate = "[$__rate_interval]"
    panels: list[Panel | board.Row] = [
        board.Row("Load"),
        big_stat("Requests per second",
                 prom_target(f"sum(rate({requests}{{{sel}}}{rate}))"), "reqps"),
        big_stat("Answered 429 (time range)",
                 prom_target(f"sum(increase({rejected}{{{sel}}}[$__range])) or vector(0)"),
                 "short").thresholds(thresholds((None, "green"), (1, "red"))),
        big_stat("Cluster-wide LISTs without limit (time range)",
                 prom_target(f'sum(increase({unbounded}{{{job},client=~"$client",'
                             f'resource=~"$resource"}}[$__range])) or vector(0)'), "short",
                 description="LISTs of a whole resource with neither limit nor "
                             "resourceVersion: each reads every object from etcd."),
        big_stat("Requests counted as other (time range)",
                 prom_target(f'sum(increase(lunettes_apiserver_label_folded_requests_total'
                             f'{{{job},label="client"}}[$__range])) or vector(0)'), "short",
                 description="Requests of clients beyond the label guard's places "
                             "(requests.max_label_values): counted under client=other."),
        stacked("lines", seconds_series(
            "Requests by client (top 10)",
            [prom_target(f"topk(10, sum by (client) (rate({requests}{{{sel}}}{rate})))",
                         "{{client}}")], w=12, unit="reqps")),
        horizontal_bars("Top talkers (time range)",
                        [prom_target(f"topk(10, sum by (client) (increase({requests}"
                                     f"{{{sel}}}[$__range])))", "{{client}}")],
                        "short", w=12),
        stacked("lines", seconds_series(
            "Requests by verb",
            [prom_target(f"sum by (verb) (rate({requests}{{{sel}}}{rate}))", "{{verb}}")],
            w=8, unit="reqps")),
        seconds_series("Requests by resource (top 10)",
                       [prom_target(f"topk(10, sum by (resource) (rate({requests}{{{sel}}}"
                                    f"{rate})))", "{{resource}}")], w=8, unit="reqps"),
        seconds_series("Requests by client and verb (top 10)",
                       [prom_target(f"topk(10, sum by (client, verb, resource) (rate("
                                    f"{requests}{{{sel}}}{rate})))",
                                    "{{client}} {{verb}} {{resource}}")], w=8, unit="reqps"),

        board.Row("Latency (from the audit log; never averaged)"),
        seconds_series("p99 latency by verb, worst instance",
                       [prom_target(worst_instance_quantile(0.99, latency, lat, "verb"),
                                    "{{verb}}")],
                       description="requestReceivedTimestamp to stageTimestamp, watches and "
                                   "exec/attach/port-forward/proxy left out; the quantile of "
                                   "each lunettes instance's buckets, then the worst."),
        seconds_series("p99 latency by resource, worst instance (top 10)",
                       [prom_target("topk(10, " + worst_instance_quantile(
                           0.99, latency, lat, "resource") + ")", "{{resource}}")]),

        board.Row("Rejected and expensive requests"),
        seconds_series("Answered 429 by client, verb and resource",
                       [prom_target(f"sum by (client, verb, resource) (rate({rejected}"
                                    f"{{{sel}}}{rate}))", "{{client}} {{verb}} {{resource}}")],
                       w=12, unit="reqps",
                       description="Who is throttled. kube-apiserver writes no flow schema or "
                                   "priority level into its audit log: the Control plane "
                                   "dashboard shows its rejections by flow schema."),
        seconds_series("Cluster-wide LISTs without limit, by client and resource",
                       [prom_target(f'sum by (client, resource) (rate({unbounded}{{{job},'
                                    f'client=~"$client",resource=~"$resource"}}{rate}))',
                                    "{{client}} {{resource}}")], w=12, unit="reqps"),
    ]
    return dashboard(
        APISERVER_LOAD_UID, "API server load",
        "The requests of the audit log as lunettes counts them (lunettes serve or replay "
        "--apiserver-load): who calls the API server, how often, how slowly, who is "
        "throttled and who lists the whole cluster.",
        variables, panels,
        links=[url_link("Control plane", f"/d/{CONTROL_PLANE_UID}/control-plane")])


DASHBOARDS: dict[str, Callable[[], board.Dashboard]] = {
    "lunettes-apiserver-load.json": apiserver_load_dashboard,
    "lunettes-control-plane.json": control_plane_dashboard,
    "lunettes-pod-slo.json": slo_dashboard,
    "lunettes-pod-trace.json": trace_dashboard,
    "lunettes-diagnosis.json": diagnosis_dashboard,
}


def render() -> dict[str, str]:
    """Every dashboard file's name and content."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {name: encoder.encode(build().build()) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if check and stale:
        print(f"out of date: {', '.join(stale)}; run python3 grafana/generate.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
