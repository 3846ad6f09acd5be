"""Writes the lunettes Grafana dashboards: grafana/dashboards/*.json.

    python3 grafana/generate.py           # rewrite the dashboards
    python3 grafana/generate.py --check   # exit 1, naming the files, if one is out of date

The JSON files are what Grafana loads (provisioning/dashboards/lunettes.yaml points at
the folder); this script is their source, so panel ids, grid positions and the shared
filters stay consistent. Edit here, regenerate, commit both. tests/test_grafana.py checks
the files are up to date, their structure, and runs every PromQL query against a real
Prometheus scraping ``lunettes serve``.

Datasources are chosen by datasource variables; their defaults are the uids of
provisioning/datasources/lunettes.yaml.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
SCHEMA_VERSION = 39

# Provisioned datasource uids (provisioning/datasources/lunettes.yaml).
PROMETHEUS_UID = "lunettes-prometheus"
JAEGER_UID = "lunettes-jaeger"
ES_PODS_UID = "lunettes-es-pods"
ES_DIAGNOSES_UID = "lunettes-es-diagnoses"

SLO_UID = "lunettes-pod-slo"
TRACE_UID = "lunettes-pod-trace"
DIAGNOSIS_UID = "lunettes-diagnosis"

PROM = {"type": "prometheus", "uid": "${datasource}"}
JAEGER = {"type": "jaeger", "uid": "${jaeger}"}
ES_PODS = {"type": "elasticsearch", "uid": "${es_pods}"}
ES_DIAGNOSES = {"type": "elasticsearch", "uid": "${es_diagnoses}"}

Json = dict[str, Any]


# -- template variables ------------------------------------------------------------------

def datasource_var(name: str, label: str, plugin: str, uid: str, regex: str = "") -> Json:
    return {"name": name, "label": label, "type": "datasource", "query": plugin,
            "regex": regex, "current": {"text": uid, "value": uid}, "hide": 0,
            "refresh": 1, "options": [], "includeAll": False, "multi": False}


def prom_var(name: str, label: str, query: str, *, multi: bool = True,
             all_value: str = ".*") -> Json:
    var: Json = {"name": name, "label": label, "type": "query", "datasource": PROM,
                 "query": {"query": query, "refId": f"{name}-values"},
                 "definition": query, "refresh": 2, "sort": 1, "hide": 0, "options": [],
                 "multi": multi, "includeAll": multi,
                 "current": {"text": "All", "value": "$__all"} if multi else {}}
    if multi:
        var["allValue"] = all_value
    return var


def es_terms_var(name: str, label: str, datasource: Json, field: str, query: str = "",
                 *, include_all: bool = False, regex: str = "", hide: int = 0) -> Json:
    """A variable listing the values of a keyword field (an Elasticsearch terms query)."""
    find: Json = {"find": "terms", "field": field, "size": 1000}
    if query:
        find["query"] = query
    text = json.dumps(find)
    var: Json = {"name": name, "label": label, "type": "query", "datasource": datasource,
                 "query": text, "definition": text, "refresh": 2, "sort": 1, "hide": hide,
                 "regex": regex, "options": [], "multi": False, "includeAll": include_all,
                 "current": {}}
    if include_all:
        var["allValue"] = "*"
        var["current"] = {"text": "All", "value": "$__all"}
    return var


def textbox(name: str, label: str, default: str, description: str) -> Json:
    return {"name": name, "label": label, "type": "textbox", "query": default,
            "description": description, "hide": 0,
            "current": {"text": default, "value": default},
            "options": [{"selected": True, "text": default, "value": default}]}


def custom_var(name: str, label: str, values: list[str], description: str) -> Json:
    return {"name": name, "label": label, "type": "custom", "query": ",".join(values),
            "description": description, "hide": 0, "multi": False, "includeAll": False,
            "current": {"text": values[0], "value": values[0]},
            "options": [{"selected": i == 0, "text": v, "value": v}
                        for i, v in enumerate(values)]}


# -- panels ------------------------------------------------------------------------------

def prom_target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> Json:
    return {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend or "__auto",
            "range": True, "editorMode": "code", **extra}


def panel(kind: str, title: str, targets: list[Json], datasource: Json, *, w: int = 12,
          h: int = 8, unit: str = "", description: str = "", options: Json | None = None,
          defaults: Json | None = None, overrides: list[Json] | None = None,
          links: list[Json] | None = None, transformations: list[Json] | None = None) -> Json:
    field_defaults: Json = {**(defaults or {})}
    if unit:
        field_defaults["unit"] = unit
    out: Json = {"type": kind, "title": title, "description": description,
                 "datasource": datasource, "targets": targets,
                 "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
                 "options": options or {}, "gridPos": {"w": w, "h": h}}
    if links:
        out["links"] = links
    if transformations:
        out["transformations"] = transformations
    return out


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"w": 24, "h": 1}}


def layout(panels: list[Json]) -> list[Json]:
    """Numbers the panels and places them left to right, top to bottom."""
    x = y = line = 0
    for number, p in enumerate(panels, 1):
        p["id"] = number
        grid = p["gridPos"]
        if p["type"] == "row" or x + grid["w"] > 24:
            x, y, line = 0, y + line, 0
        grid["x"], grid["y"] = x, y
        x += grid["w"]
        line = max(line, grid["h"])
        if p["type"] == "row":
            x, y, line = 0, y + grid["h"], 0
    return panels


def dashboard(uid: str, title: str, description: str, variables: list[Json],
              panels: list[Json], *, time_from: str = "now-6h",
              links: list[Json] | None = None) -> Json:
    return {
        "uid": uid, "title": title, "description": description, "tags": ["lunettes"],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True,
        "graphTooltip": 1, "timezone": "browser", "refresh": "1m", "liveNow": False,
        "time": {"from": time_from, "to": "now"}, "timepicker": {},
        "fiscalYearStartMonth": 0, "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"title": "lunettes", "type": "dashboards", "tags": ["lunettes"],
                   "asDropdown": True, "includeVars": False, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "url": "", "tooltip": ""},
                  *(links or [])],
        "templating": {"list": variables},
        "panels": layout(panels),
    }


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {"thresholds": {"mode": "absolute",
                           "steps": [{"value": v, "color": c} for v, c in steps]}}


# -- Pod delivery SLO (Prometheus) -------------------------------------------------------

def slo_dashboard() -> Json:
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

    def quantiles(metric: str, selector: str) -> list[Json]:
        """p50, p90, p99; the p50 query also fetches the exemplars (one dot per Pod, its
        trace id linked to Jaeger by the datasource's exemplarTraceIdDestinations)."""
        return [prom_target(f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket"
                            f"{{{selector}}}[$__rate_interval])))", f"p{int(q * 100)}", ref,
                            exemplar=ref == "A")
                for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))]

    percent = thresholds((None, "red"), (0.95, "orange"), (0.99, "green"))
    seconds_ts: Json = {"custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0,
                                   "spanNulls": True}}
    variables = [
        datasource_var("datasource", "Prometheus", "prometheus", PROMETHEUS_UID),
        prom_var("job", "Job", "label_values(lunettes_audit_records_read_total, job)",
                 multi=False),
        prom_var("namespace", "Namespace",
                 f"label_values({results}{{{job}}}, namespace)"),
        prom_var("slo_class", "SLO class", f"label_values({results}{{{job}}}, slo_class)"),
        custom_var("objective", "Objective", ["0.99", "0.995", "0.999", "0.95", "0.9"],
                   "The SLO objective: the share of verdicts (met + violated) that must be "
                   "met. Keep it equal to lunettes:pod_slo_objective:ratio of the alerting "
                   "rules (deploy/prometheus/lunettes-rules.yaml)."),
    ]
    panels = [
        row("Delivery SLO"),
        panel("stat", "SLO success ratio (time range)", [prom_target(ratio("$__range"))],
              PROM, w=6, h=5, unit="percentunit", defaults={**percent, "decimals": 2},
              description="Met / (met + violated) over the dashboard's time range. Killed, "
                          "in-progress and not-applicable verdicts are left out."),
        panel("stat", "Error budget left (time range)",
              [prom_target(f"1 - ((sum(increase({bad}[$__range])) or vector(0)) / "
                           f"sum(increase({valid}[$__range]))) / (1 - $objective)")],
              PROM, w=6, h=5, unit="percentunit",
              defaults={**thresholds((None, "red"), (0, "orange"), (0.5, "green")),
                        "decimals": 1},
              description="The share of the error budget (1 - objective) not spent by the "
                          "violations in the time range; negative when overspent."),
        panel("stat", "Verdicts (time range)",
              [prom_target(f"sum by (result) (increase({results}{{{sel}}}[$__range]))",
                           "{{result}}")],
              PROM, w=12, h=5, unit="short",
              options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                         "values": False},
                       "textMode": "value_and_name", "colorMode": "background",
                       "graphMode": "none", "orientation": "horizontal"},
              description="Pods that got each SLO verdict (met, violated, killed, "
                          "in_progress, not_applicable)."),
        panel("timeseries", "SLO success ratio", [
            prom_target(ratio("$__rate_interval"), "success ratio"),
            prom_target("vector($objective)", "objective", "B")],
            PROM, w=12, unit="percentunit", defaults={**seconds_ts, "max": 1},
            description="Met / (met + violated) of the verdicts given in each interval, "
                        "against the objective."),
        panel("timeseries", "SLO success ratio by namespace",
              [prom_target(ratio("$__rate_interval", "namespace"), "{{namespace}}")],
              PROM, w=12, unit="percentunit", defaults={**seconds_ts, "max": 1}),
        panel("bargauge", "SLO success ratio by class (time range)",
              [prom_target(ratio("$__range", "slo_class"), "{{slo_class}}")],
              PROM, w=8, unit="percentunit", defaults={**percent, "min": 0, "max": 1},
              options={"orientation": "horizontal", "displayMode": "basic",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                         "values": False}}),
        panel("timeseries", "Violations by reason",
              [prom_target(f"sum by (reason) (increase({bad}[$__rate_interval]))",
                           "{{reason}}")],
              PROM, w=8, unit="short",
              defaults={"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"},
                                   "fillOpacity": 80}},
              description="Violated verdicts by diagnosis reason code (none: no finding)."),
        panel("bargauge", "Top violation reasons (time range)",
              [prom_target(f"topk(10, sum by (reason) (increase({bad}[$__range])))",
                           "{{reason}}")],
              PROM, w=8, unit="short",
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                         "values": False}},
              links=[{"title": "Diagnosis: the Pods behind these reasons",
                      "url": f"/d/{DIAGNOSIS_UID}/diagnosis?${{__url_time_range}}"}]),

        row("Delivery time"),
        panel("timeseries", "Delivery time without user time (the SLO's measure)",
              quantiles("lunettes_pod_delivery_platform_duration_seconds", cls), PROM,
              unit="s", defaults=seconds_ts,
              description="Creation to delivery of delivered Pods minus user time (init "
                          "containers, readiness probes and gates, user faults)."),
        panel("timeseries", "Delivery time with user time",
              quantiles("lunettes_pod_delivery_duration_seconds", cls), PROM, unit="s",
              defaults=seconds_ts,
              description="Creation to delivery (Ready, or the terminal phase of Pods that "
                          "run to completion), everything included."),
        panel("heatmap", "Delivery time without user time (heatmap)",
              [prom_target("sum by (le) (increase(lunettes_pod_delivery_platform_duration_"
                           f"seconds_bucket{{{cls}}}[$__rate_interval]))", "{{le}}",
                           format="heatmap")],
              PROM, w=12, unit="s",
              options={"calculate": False, "yAxis": {"unit": "s"},
                       "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges",
                                               "exponent": 0.5, "steps": 64},
                       "rowsFrame": {"layout": "auto"}, "tooltip": {"show": True}}),
        panel("timeseries", "p90 delivery time without user time, by class",
              [prom_target("histogram_quantile(0.9, sum by (le, slo_class) (rate("
                           f"lunettes_pod_delivery_platform_duration_seconds_bucket{{{cls}}}"
                           "[$__rate_interval])))", "{{slo_class}}", exemplar=True)],
              PROM, unit="s", defaults=seconds_ts),
        panel("timeseries", "Pod startup SLI (as kubelet_pod_start_sli_duration_seconds)",
              quantiles("lunettes_pod_start_sli_duration_seconds", job), PROM, w=24,
              unit="s", defaults=seconds_ts,
              description="Creation to all containers started, without image pulls and "
                          "init containers: the upstream pod startup SLI."),

        row("Stages"),
        panel("timeseries", "p90 stage time by stage",
              [prom_target("histogram_quantile(0.9, sum by (le, stage) (rate("
                           f"lunettes_pod_stage_duration_seconds_bucket{{{job},"
                           'stage!="delivery"}[$__rate_interval])))', "{{stage}}",
                           exemplar=True)],
              PROM, unit="s", defaults=seconds_ts,
              description="Stages of stages.yaml (the root 'delivery' span left out)."),
        panel("bargauge", "Mean stage time (time range)",
              [prom_target("sum by (stage, owner) (increase(lunettes_pod_stage_duration_"
                           f'seconds_sum{{{job},stage!="delivery"}}[$__range])) / '
                           "sum by (stage, owner) (increase(lunettes_pod_stage_duration_"
                           f'seconds_count{{{job},stage!="delivery"}}[$__range]))',
                           "{{stage}} ({{owner}})")],
              PROM, unit="s",
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                         "values": False}}),
        panel("timeseries", "Stage time spent, platform vs user",
              [prom_target("sum by (owner) (rate(lunettes_pod_stage_duration_seconds_sum"
                           f'{{{job},stage!="delivery"}}[$__rate_interval]))', "{{owner}}")],
              PROM, w=24, unit="s",
              defaults={"custom": {"drawStyle": "line", "stacking": {"mode": "normal"},
                                   "fillOpacity": 30}},
              description="Seconds of stage time per second, by who owns the stage."),

        row("Pipeline health"),
        panel("stat", "Audit lag", [prom_target(f"max(lunettes_audit_lag_seconds{{{job}}})")],
              PROM, w=6, h=5, unit="s",
              defaults=thresholds((None, "green"), (60, "orange"), (300, "red")),
              description="Processing clock minus the newest audit timestamp read; only "
                          "meaningful when following a live log."),
        panel("stat", "Pods in flight", [prom_target(f"sum(lunettes_pods_in_flight{{{job}}})")],
              PROM, w=6, h=5, unit="short"),
        panel("stat", "Scrape up", [prom_target(f"sum(up{{{job}}})")], PROM, w=6, h=5,
              unit="short", defaults=thresholds((None, "red"), (1, "green"))),
        panel("stat", "Bad records (time range)",
              [prom_target(f"sum(increase(lunettes_audit_bad_records_total{{{job}}}"
                           "[$__range])) or vector(0)")],
              PROM, w=6, h=5, unit="short",
              defaults=thresholds((None, "green"), (1, "orange"))),
        panel("timeseries", "Audit records read",
              [prom_target(f"sum(rate(lunettes_audit_records_read_total{{{job}}}"
                           "[$__rate_interval]))", "read"),
               prom_target(f"sum(rate(lunettes_audit_duplicate_records_total{{{job}}}"
                           "[$__rate_interval]))", "duplicates", "B")],
              PROM, w=8, unit="reqps"),
        panel("timeseries", "Bad records by reason",
              [prom_target(f"sum by (reason) (rate(lunettes_audit_bad_records_total{{{job}}}"
                           "[$__rate_interval]))", "{{reason}}")],
              PROM, w=8, unit="reqps"),
        panel("timeseries", "Pod records by outcome",
              [prom_target(f"sum by (outcome) (rate(lunettes_pods_total{{{job}}}"
                           "[$__rate_interval]))", "{{outcome}}")],
              PROM, w=8, unit="reqps"),
        panel("timeseries", "Audit lag and pods in flight",
              [prom_target(f"max(lunettes_audit_lag_seconds{{{job}}})", "lag (s)"),
               prom_target(f"sum(lunettes_pods_in_flight{{{job}}})", "pods in flight", "B")],
              PROM, w=24, unit="short"),
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


def links_vars() -> list[Json]:
    return [
        textbox("api_url", "lunettes API", "http://localhost:8080",
                "Base URL of lunettes serve, for the /api/v1/pods/{uid} links."),
        textbox("jaeger_url", "Jaeger UI", "http://localhost:16686",
                "Base URL of the Jaeger UI, for links to a Pod's trace."),
    ]


def es_table(title: str, datasource: Json, query: str, columns: list[str], *, w: int = 24,
             h: int = 8, size: int = 500, description: str = "",
             overrides: list[Json] | None = None) -> Json:
    """A table of raw documents, showing ``columns`` in that order."""
    target = {"refId": "A", "datasource": datasource, "query": query, "alias": "",
              "metrics": [{"id": "1", "type": "raw_data", "settings": {"size": str(size)}}],
              "bucketAggs": [], "timeField": "created"}
    order = {name: i for i, name in enumerate(columns)}
    return panel("table", title, [target], datasource, w=w, h=h, description=description,
                 options={"showHeader": True, "cellHeight": "sm",
                          "footer": {"show": False, "reducer": ["sum"], "fields": ""},
                          "sortBy": [{"displayName": "created", "desc": True}]},
                 defaults={"custom": {"align": "auto", "cellOptions": {"type": "auto"},
                                      "inspect": True}},
                 overrides=overrides,
                 transformations=[{"id": "organize", "options": {
                     "excludeByName": {}, "indexByName": order, "renameByName": {},
                     "includeByName": {name: True for name in columns}}}])


def link_override(field: str, *links: tuple[str, str]) -> Json:
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": "links", "value": [
                {"title": title, "url": url, "targetBlank": url.startswith("$")}
                for title, url in links]}]}


def jaeger_search_url(uid: str) -> str:
    """The Jaeger UI's search for the traces of a Pod (the resource attribute k8s.pod.uid)."""
    return ("${jaeger_url}/search?service=lunettes&limit=20&tags="
            "%7B%22k8s.pod.uid%22%3A%22" + uid + "%22%7D")


def trace_dashboard() -> Json:
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
                       regex=regex, hide=2) for i, regex in enumerate(UID_PARTS, 1)],
        *links_vars(),
    ]
    uid_links = link_override(
        "uid", ("lunettes API: this Pod", "${api_url}/api/v1/pods/${__value.raw}"),
        ("Jaeger UI: this Pod's trace", jaeger_search_url("${__value.raw}")))
    panels = [
        panel("traces", "Delivery trace", [{"refId": "A", "datasource": JAEGER,
                                            "query": TRACE_ID}],
              JAEGER, w=24, h=14,
              description="The Pod's delivery trace: one span per stage, its trace id is "
                          "the Pod UID without dashes."),
        es_table("Diagnosis", ES_DIAGNOSES, 'uid:"$uid"',
                 ["created", "reason", "stage", "owner", "message", "hint", "so_far",
                  "outcome", "slo_result", "slo_class", "uid"], h=5,
                 description="Why the Pod failed or was slow (no row: nothing to explain).",
                 overrides=[uid_links]),
        es_table("Pod record", ES_PODS, 'uid:"$uid"',
                 ["created", "finished", "namespace", "name", "node", "outcome",
                  "duration_s", "slo.result", "slo.class", "slo.platform_s", "slo.user_s",
                  "slo.deadline_s", "owner_kind", "owner_name", "uid"], h=5,
                 overrides=[uid_links]),
    ]
    return dashboard(
        TRACE_UID, "Pod delivery trace",
        "lunettes: one Pod's delivery trace (Jaeger) and its diagnosis and pod record "
        "(Elasticsearch). Pick the namespace, the Pod and, when a name was reused, the UID.",
        variables, panels, time_from="now-7d",
        links=[{"title": "lunettes API: this Pod", "type": "link", "icon": "external link",
                "url": "${api_url}/api/v1/pods/${uid}", "targetBlank": True,
                "tooltip": "", "tags": [], "asDropdown": False, "includeVars": False,
                "keepTime": False},
               {"title": "Jaeger UI: this Pod", "type": "link", "icon": "external link",
                "url": jaeger_search_url("${uid}"), "targetBlank": True, "tooltip": "",
                "tags": [], "asDropdown": False, "includeVars": False, "keepTime": False}])


# -- Diagnosis (Elasticsearch) -----------------------------------------------------------

def diagnosis_dashboard() -> Json:
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

    def count_by(field: str) -> Json:
        return {"refId": "A", "datasource": ES_DIAGNOSES, "query": filters, "alias": "",
                "metrics": [{"id": "1", "type": "count"}],
                "bucketAggs": [{"id": "2", "type": "terms", "field": field, "settings": {
                    "size": "20", "order": "desc", "orderBy": "_count",
                    "min_doc_count": "1"}}],
                "timeField": "created"}

    panels = [
        es_table("Recent failed or slow Pods", ES_DIAGNOSES, filters,
                 ["created", "namespace", "name", "reason", "stage", "owner", "message",
                  "outcome", "slo_result", "slo_class", "node", "uid"], h=14, size=500,
                 description="The newest diagnosed Pods. Click a name for its trace, a UID "
                             "for the lunettes API or the Jaeger UI.",
                 overrides=[
                     link_override("name", ("Delivery trace of this Pod", trace_link)),
                     link_override("uid", ("lunettes API: this Pod",
                                           "${api_url}/api/v1/pods/${__value.raw}"),
                                   ("Jaeger UI: this Pod's trace",
                                    jaeger_search_url("${__value.raw}")),
                                   ("Delivery trace of this Pod", trace_link))]),
        panel("barchart", "Diagnoses by reason", [count_by("reason")], ES_DIAGNOSES, w=8,
              options={"orientation": "horizontal", "showValue": "auto",
                       "legend": {"showLegend": False, "displayMode": "list",
                                  "placement": "bottom", "calcs": []},
                       "xTickLabelRotation": 0}),
        panel("barchart", "Diagnoses by stage", [count_by("stage")], ES_DIAGNOSES, w=8,
              options={"orientation": "horizontal", "showValue": "auto",
                       "legend": {"showLegend": False, "displayMode": "list",
                                  "placement": "bottom", "calcs": []},
                       "xTickLabelRotation": 0}),
        panel("timeseries", "Diagnoses over time, by who must act", [{
            "refId": "A", "datasource": ES_DIAGNOSES, "query": filters, "alias": "",
            "metrics": [{"id": "1", "type": "count"}],
            "bucketAggs": [
                {"id": "2", "type": "terms", "field": "owner",
                 "settings": {"size": "5", "order": "desc", "orderBy": "_count",
                              "min_doc_count": "1"}},
                {"id": "3", "type": "date_histogram", "field": "created",
                 "settings": {"interval": "auto", "min_doc_count": "0"}}],
            "timeField": "created"}], ES_DIAGNOSES, w=8, unit="short",
              defaults={"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"},
                                   "fillOpacity": 80}}),
    ]
    return dashboard(
        DIAGNOSIS_UID, "Diagnosis",
        "lunettes: the Pods that failed or were slow, with the reason code, the stage, who "
        "must act and the message (the diagnoses index).",
        variables, panels, time_from="now-24h")


DASHBOARDS = {
    "lunettes-pod-slo.json": slo_dashboard,
    "lunettes-pod-trace.json": trace_dashboard,
    "lunettes-diagnosis.json": diagnosis_dashboard,
}


def render() -> dict[str, str]:
    """Every dashboard file's name and content."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n"
            for name, build in DASHBOARDS.items()}


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
