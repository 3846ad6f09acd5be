"""The Grafana dashboards (grafana/) and the Prometheus rules (deploy/prometheus/).

- The dashboard files are what grafana/generate.py writes, and their structure holds:
  unique panel ids, datasources that are provisioned or datasource variables, every
  variable defined, links that lead somewhere, Elasticsearch fields that lunettes maps.
- End to end: a real Prometheus (Debian's package), configured from
  deploy/prometheus/prometheus.yml with the rules loaded, scrapes a real ``lunettes serve``
  that follows a log growing with the bundled sample. Every PromQL expression of the
  dashboards and the rules must then return data, and every metric they name must be in
  lunettes' exposition (or recorded by the rules).
- The Control plane dashboard reads what kube-apiserver exports: its PromQL runs against a
  real Prometheus over series backfilled with promtool (synthetic API servers, one of them
  slowing down), and shows the slow instance's latency, not an average.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lunettes.model.ids import trace_id
from lunettes.store.es_indices import DIAGNOSES, MAPPINGS, PODS

pytest.importorskip("fastapi", reason="needs the serve extra")
from test_serve import SAMPLE, lunettes_serve, need_prometheus, prometheus, run_prometheus, wait_for

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
CONTROL_PLANE = "lunettes-control-plane.json"  # over kube-apiserver's metrics, not lunettes'
APISERVER_LOAD = "lunettes-apiserver-load.json"  # over replay --apiserver-load's backfill
BACKFILLED = (CONTROL_PLANE, APISERVER_LOAD)
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "lunettes.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "lunettes.yaml"
RULES = ROOT / "deploy" / "prometheus" / "lunettes-rules.yaml"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

# What the dashboards' variables become when their queries run here. `.*` stands for the
# multi-value variables' "All"; windows are wide enough for a test that lasts seconds.
SUBSTITUTIONS = {
    "__rate_interval": "5m", "__interval": "1m", "__range": "1h",
    "job": "lunettes", "namespace": ".*", "slo_class": ".*", "objective": "0.99",
}
CONTROL_PLANE_SUBSTITUTIONS = {
    **SUBSTITUTIONS, "job": "apiserver", "instance": ".*", "verb": ".*", "resource": ".*"}
# Backfilled series carry no job label (promtool adds none; a scrape would): job=~".*".
LOAD_SUBSTITUTIONS = {**SUBSTITUTIONS, "job": ".*", "client": ".*", "verb": ".*",
                      "resource": ".*", "__range": "10m"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__value", "__data",
                    "__url_time_range", "__all", "__field", "__series", "__from", "__to",
                    "__dashboard", "__org", "__user", "__name"}
VAR_RE = re.compile(r"\$\{([A-Za-z0-9_]+)(?:[.:][^}]*)?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                   "and", "or", "unless", "offset", "inf", "nan", "atan2"}


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def provisioned() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(DATASOURCES.read_text())
    return {ds["uid"]: ds for ds in data["datasources"]}


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in board["templating"]["list"]}


def referenced_vars(value: Any) -> set[str]:
    """Every ``$var`` / ``${var}`` / ``${var:format}`` in any string inside ``value``."""
    if isinstance(value, str):
        return {a or b for a, b in VAR_RE.findall(value)}
    if isinstance(value, dict):
        return set().union(*map(referenced_vars, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(referenced_vars, value)) if value else set()
    return set()


def substitute(expr: str, values: dict[str, str] = SUBSTITUTIONS) -> str:
    def one(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        assert name in values, f"no test value for ${name} in {expr}"
        return values[name]

    return VAR_RE.sub(one, expr)


# -- PromQL: expressions of the dashboards and rules --------------------------------------

def dashboard_exprs(only: str | None = None) -> list[tuple[str, str]]:
    """(where, PromQL) of every Prometheus target and query variable, substituted: of the
    dashboards a following ``lunettes serve`` feeds, or of the dashboard ``only`` (one of
    :data:`BACKFILLED`, tested over backfilled series)."""
    found = []
    values = {CONTROL_PLANE: CONTROL_PLANE_SUBSTITUTIONS,
              APISERVER_LOAD: LOAD_SUBSTITUTIONS}.get(only or "", SUBSTITUTIONS)
    for name, board in load_dashboards().items():
        if name != only if only else name in BACKFILLED:
            continue
        for panel in all_panels(board):
            for target in panel.get("targets", []):
                if "expr" in target:
                    found.append((f"{name}: {panel['title']} [{target['refId']}]",
                                  substitute(target["expr"], values)))
        for var in board["templating"]["list"]:
            query = var.get("query")
            if var["type"] == "query" and isinstance(query, dict) and "query" in query:
                # label_values(selector, label) lists the label's values of the selector's
                # series: the same question in PromQL.
                match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query["query"])
                assert match, f"{name}: ${var['name']}: unexpected query {query['query']}"
                found.append((f"{name}: ${var['name']}",
                              f"count by ({match[2]}) ({substitute(match[1], values)})"))
    return found


def split_top_level(expr: str, separators: re.Pattern[str]) -> list[str]:
    """``expr`` cut at the separators that stand outside (), {}, [] and strings."""
    parts, depth, start, i, quote = [], 0, 0, 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif depth == 0:
            match = separators.match(expr, i)
            if match:
                parts.append(expr[start:i])
                start = i = match.end()
                continue
        i += 1
    parts.append(expr[start:])
    return [p.strip() for p in parts if p.strip()]


COMPARISON = re.compile(r"\s+(?:and|or|unless)\s+|(?:==|!=|>=|<=|>|<)")
NUMBER = re.compile(r"[0-9.eE+-]+")


def rule_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) of every rule. An alert's condition is evaluated without its
    thresholds: each side of its comparisons and ``and``s, numbers left out, so that data
    is required even where the alert is (rightly) not firing."""
    found = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            if "record" in rule:
                found.append((f"record {rule['record']}", expr))
                continue
            operands = [p for p in split_top_level(expr, COMPARISON)
                        if not NUMBER.fullmatch(p)]
            assert operands, rule["alert"]
            found += [(f"alert {rule['alert']} operand {i}", operand)
                      for i, operand in enumerate(operands, 1)]
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, label matchers,
    grouping labels and durations left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = match[0], text[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue
        if re.fullmatch(r"\d*[eE]\d*", word):
            continue
        names.add(word)
    return names


def test_promql_helpers() -> None:
    assert split_top_level('a{x=~"a|b"} > 0.5 and (b > 2)', COMPARISON) == [
        'a{x=~"a|b"}', "0.5", "(b > 2)"]
    assert split_top_level("sum(x) / (y + z) > 0.01", COMPARISON) == [
        "sum(x) / (y + z)", "0.01"]
    assert metric_names('histogram_quantile(0.9, sum by (le, stage) (rate(a_bucket{job=~"'
                        '$job", stage!="x"}[5m]))) / on() b:rec or vector(0)') == {
        "a_bucket", "b:rec"}
    assert substitute("rate(x{namespace=~\"$namespace\"}[$__rate_interval])") == (
        'rate(x{namespace=~".*"}[5m])')
    assert referenced_vars({"a": ["${uid_1}${uid_2}", "$api_url/x ${__value.raw}"]}) == {
        "uid_1", "uid_2", "api_url", "__value"}


# -- structure --------------------------------------------------------------------------

def test_dashboard_files_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    stale = [name for name, text in rendered.items()
             if (GRAFANA / "dashboards" / name).read_text() != text]
    assert not stale, f"out of date: {stale}; run python3 grafana/generate.py"


def test_dashboards_are_valid_models() -> None:
    boards = load_dashboards()
    assert {b["title"] for b in boards.values()} == {
        "Pod delivery SLO", "Pod delivery trace", "Diagnosis", "Control plane",
        "API server load"}
    assert len({b["uid"] for b in boards.values()}) == len(boards)
    for name, board in boards.items():
        assert board["schemaVersion"] >= 36, name
        assert board["uid"] and len(board["uid"]) <= 40, name
        ids = [p["id"] for p in all_panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in all_panels(board):
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel["targets"], f"{name}: {panel.get('title')}"
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def check_datasource(ref: dict[str, Any], board: dict[str, Any], where: str) -> None:
    sources, board_vars = provisioned(), variables(board)
    uid, kind = ref["uid"], ref["type"]
    match = re.fullmatch(r"\$\{(\w+)\}|\$(\w+)", uid)
    if match is None:
        assert uid in sources and sources[uid]["type"] == kind, f"{where}: {ref}"
        return
    var = board_vars.get(match[1] or match[2])
    assert var is not None and var["type"] == "datasource", f"{where}: {ref}"
    assert var["query"] == kind, f"{where}: {ref} is not a {kind} variable"
    regex = var.get("regex") or ""
    pattern = re.compile(regex.strip("/")) if regex else None
    candidates = [ds for ds in sources.values() if ds["type"] == kind
                  and (pattern is None or pattern.search(ds["name"]))]
    assert candidates, f"{where}: no provisioned {kind} datasource for ${var['name']}"
    assert var["current"]["value"] in {ds["uid"] for ds in candidates}, where


def test_every_datasource_is_provisioned_or_a_datasource_variable() -> None:
    for name, board in load_dashboards().items():
        for panel in all_panels(board):
            if panel["type"] == "row":
                continue
            where = f"{name}: {panel['title']}"
            check_datasource(panel["datasource"], board, where)
            for target in panel["targets"]:
                assert target.get("datasource", panel["datasource"]) == panel["datasource"]
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                check_datasource(var["datasource"], board, f"{name}: ${var['name']}")


def api_routes() -> set[str]:
    """The GET paths of lunettes serve, parameters written ``{}``."""
    from prometheus_client import CollectorRegistry

    from lunettes.api.app import create_app

    paths = create_app(CollectorRegistry()).openapi()["paths"]
    return {re.sub(r"\{[^}]+\}", "{}", path) for path, ops in paths.items() if "get" in ops}


def test_every_variable_is_defined_and_links_lead_somewhere() -> None:
    boards = load_dashboards()
    by_uid = {b["uid"]: b for b in boards.values()}
    for name, board in boards.items():
        defined = set(variables(board))
        used = referenced_vars(board["panels"]) | referenced_vars(board["links"]) | (
            referenced_vars(board["templating"]["list"]))
        assert used - defined - GRAFANA_BUILTINS == set(), name
        for url in re.findall(r'"url": "([^"]*)"', json.dumps(board)):
            if url.startswith("${api_url}"):  # a route of the lunettes API
                path = re.sub(r"\$\{[^}]+\}", "{}", url.removeprefix("${api_url}"))
                assert path in api_routes(), f"{name}: lunettes serves no {url}"
                continue
            if not url or url.startswith("$"):
                continue
            match = re.match(r"/d/([\w-]+)/[\w-]+(?:\?(.*))?$", url)
            assert match, f"{name}: link {url} is neither a dashboard nor a variable URL"
            target = by_uid[match[1]]
            params = re.findall(r"var-(\w+)=", match[2] or "")
            assert set(params) <= set(variables(target)), url


def test_no_credentials_or_cluster_names() -> None:
    for name, board in load_dashboards().items():
        text = json.dumps(board).lower()
        for word in ("password", "apikey", "api_key", "basicauth", "token", "secret"):
            assert word not in text, f"{name} mentions {word}"
        hosts = set(re.findall(r"https?://([^/\"$:]+)", text))
        assert hosts <= {"localhost"}, f"{name}: hard-coded hosts {hosts}"


def mapped(family: str, path: str) -> bool:
    props = MAPPINGS[family]["properties"]
    for part in path.split("."):
        if part not in props:
            return False
        node = props[part]
        props = node.get("properties", {})
    return True


def test_elasticsearch_fields_are_mapped_by_lunettes() -> None:
    """Every field a dashboard shows, filters or aggregates on is in the index template
    the Elasticsearch sink installs, so it is indexed (templates are dynamic: false)."""
    families = {"lunettes-es-pods": PODS, "lunettes-es-diagnoses": DIAGNOSES,
                "${es_pods}": PODS, "${es_diagnoses}": DIAGNOSES}
    checked = 0
    for name, board in load_dashboards().items():
        items: list[tuple[str, dict[str, Any], str]] = []
        for panel in all_panels(board):
            if panel.get("datasource", {}).get("type") != "elasticsearch":
                continue
            family = families[panel["datasource"]["uid"]]
            for target in panel["targets"]:
                items.append((family, target, panel["title"]))
            for t in panel.get("transformations", []):
                for column in t["options"].get("includeByName", {}):
                    assert mapped(family, column), f"{name}: {panel['title']}: {column}"
                    checked += 1
        for var in board["templating"]["list"]:
            if var["type"] == "query" and var["datasource"]["type"] == "elasticsearch":
                query = json.loads(var["query"])
                items.append((families[var["datasource"]["uid"]], query, var["name"]))
                assert mapped(families[var["datasource"]["uid"]], query["field"])
        for family, target, where in items:
            fields = [agg["field"] for agg in target.get("bucketAggs", [])]
            fields += re.findall(r"([\w.]+):", target.get("query", ""))
            for field in fields:
                assert mapped(family, field), f"{name}: {where}: {field} not mapped"
                checked += 1
            if "timeField" in target:
                assert mapped(family, target["timeField"])
    assert checked > 20


def test_trace_query_is_the_pod_uid_without_dashes() -> None:
    """Grafana joins five hidden variables, each the regex capture of the selected UID."""
    board = load_dashboards()["lunettes-pod-trace.json"]
    board_vars = variables(board)
    traces = [p for p in all_panels(board) if p["type"] == "traces"]
    assert len(traces) == 1 and traces[0]["datasource"]["type"] == "jaeger"
    query = traces[0]["targets"][0]["query"]
    assert "queryType" not in traces[0]["targets"][0]  # a trace id lookup, not a search
    for pod_uid in (str(uuid.uuid4()), "0a1b2c3d-4e5f-6789-abcd-ef0123456789"):
        def capture(match: re.Match[str], uid: str = pod_uid) -> str:
            regex = board_vars[match[1]]["regex"].strip("/")
            found = re.search(regex, uid)
            assert found, (regex, uid)
            return found[1]

        assert re.sub(r"\$\{(uid_\d)\}", capture, query) == trace_id(pod_uid).hex()
    for i in range(1, 6):
        assert board_vars[f"uid_{i}"]["hide"] == 2  # hidden from the user


def test_provisioning() -> None:
    sources = provisioned()
    assert {ds["type"] for ds in sources.values()} == {"prometheus", "jaeger",
                                                       "elasticsearch"}
    for ds in sources.values():
        assert re.fullmatch(r"\$\{[A-Z_]+\}", ds["url"]), ds  # from the environment
    indices = {ds["jsonData"]["index"] for ds in sources.values()
               if ds["type"] == "elasticsearch"}
    assert indices == {"lunettes-pods-*", "lunettes-diagnoses-*"}
    providers = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert [p["type"] for p in providers] == ["file"]


def test_latency_panels_show_exemplars_that_open_the_pods_trace() -> None:
    """Every panel over a histogram lunettes fills with exemplars asks for them, and the
    provisioned Prometheus datasource sends their trace_id to the provisioned Jaeger."""
    histograms = ("lunettes_pod_delivery_duration_seconds_bucket",
                  "lunettes_pod_delivery_platform_duration_seconds_bucket",
                  "lunettes_pod_stage_duration_seconds_bucket",
                  "lunettes_pod_start_sli_duration_seconds_bucket")
    quantile_panels = [p for d in load_dashboards().values() for p in d["panels"]
                       if p["type"] == "timeseries" and any(
                           "histogram_quantile" in t.get("expr", "")
                           and any(h in t["expr"] for h in histograms)
                           for t in p["targets"])]
    assert len(quantile_panels) >= 4
    for p in quantile_panels:
        assert any(t.get("exemplar") for t in p["targets"]), p["title"]
    sources = provisioned()
    jaeger = next(uid for uid, ds in sources.items() if ds["type"] == "jaeger")
    prometheus = next(ds for ds in sources.values() if ds["type"] == "prometheus")
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": jaeger}]


# -- end to end: every query against a real Prometheus scraping lunettes serve -----------

@contextmanager
def prometheus_with_rules(tmp: Path, target: str) -> Iterator[str]:
    """A real Prometheus started from deploy/prometheus/prometheus.yml, scraping and
    evaluating every second, its lunettes job pointed at ``target``."""
    need_prometheus()
    config = yaml.safe_load(PROM_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROM_CONFIG.parent / f) for f in config["rule_files"]]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "lunettes"]
    assert len(jobs) == 1
    jobs[0]["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = jobs
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    with run_prometheus(path, tmp) as url:
        yield url


def instant(url: str, promql: str, at: float | None = None) -> tuple[str, list[Any]]:
    params: dict[str, Any] = {"query": promql}
    if at is not None:
        params["time"] = at
    body = httpx.get(f"{url}/api/v1/query", params=params, timeout=10).json()
    assert body["status"] == "success", (promql, body)
    data = body["data"]
    if data["resultType"] == "scalar":
        return "scalar", [data["result"][1]]
    return data["resultType"], [r["value"][1] for r in data["result"]]


def exposition_names(text: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_every_query_returns_data_from_lunettes(tmp_path: Path) -> None:
    need_prometheus()
    lines = gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True)
    chunks = [lines[i:i + len(lines) // 5 + 1] for i in range(0, len(lines),
                                                              len(lines) // 5 + 1)]
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(chunks[0]))
    exprs = dashboard_exprs() + rule_exprs()
    assert len(exprs) > 40

    with lunettes_serve([str(log)], tmp_path, "--follow") as base:
        wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, "the first pass")
        with prometheus_with_rules(tmp_path, base.removeprefix("http://")) as prom:
            def scraped(count: int) -> bool:
                _, values = instant(prom, "max(lunettes_audit_records_read_total)")
                return bool(values) and float(values[0]) >= count

            fed = len(chunks[0])
            wait_for(lambda: scraped(fed), "the first chunk scraped")
            # Feed the rest chunk by chunk, each scraped before the next, so counters and
            # histograms grow between scrapes and rates are not zero; one bad line.
            for number, chunk in enumerate(chunks[1:]):
                with log.open("ab") as out:
                    out.write(b"".join(chunk) + (b"not an audit event\n" if number == 0
                                                 else b""))
                fed += len(chunk)
                wait_for(lambda n=fed: scraped(n), f"{fed} records scraped")
            wait_for(lambda: instant(prom, "rate(lunettes_audit_bad_records_total[1m])")[1],
                     "the bad record scraped twice")
            # The slowest recording rule input: the alert windows are evaluated too.
            wait_for(lambda: instant(prom, "lunettes:pod_slo_error_ratio:rate1d")[1],
                     "the recording rules")

            exposed = exposition_names(httpx.get(f"{base}/metrics").text)
            recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                        for r in g["rules"] if "record" in r}
            empty, unknown, all_nan = [], [], []
            for where, expr in exprs:
                for metric in metric_names(expr) - exposed - recorded - {"up"}:
                    unknown.append(f"{where}: {metric}")
                _, values = instant(prom, expr)
                if not values:
                    empty.append(f"{where}: {expr}")
                elif all(v in ("NaN", "+Inf", "-Inf") for v in values):
                    all_nan.append(f"{where}: {expr} -> {values}")
            assert not unknown, "metrics lunettes does not expose:\n" + "\n".join(unknown)
            assert not empty, "no data:\n" + "\n".join(empty)
            assert not all_nan, "no finite value:\n" + "\n".join(all_nan)

            # The rules compute what the raw counters say (once a rule evaluation follows
            # the last scrape: the input is all read, the counters stay put).
            def agree() -> float | None:
                _, at = instant(prom, "timestamp(lunettes:pod_slo_error_ratio:rate1d)")
                _, ratio = instant(prom, "lunettes:pod_slo_error_ratio:rate1d")
                _, raw = instant(prom, 'sum(increase(lunettes_pod_slo_results_total{'
                                       'result="violated"}[1d])) / sum(increase('
                                       'lunettes_pod_slo_results_total{result=~"met|'
                                       'violated"}[1d]))', float(at[0]))
                close = float(ratio[0]) == pytest.approx(float(raw[0]), rel=1e-3)
                return float(ratio[0]) if close else None

            assert 0 < wait_for(agree, "the recorded error ratio", 30) < 1

# -- the Control plane dashboard over backfilled kube-apiserver series --------------------

# The metrics as kube-apiserver registers them (k8s.io/apiserver: pkg/endpoints/metrics,
# pkg/util/flowcontrol/metrics, pkg/storage/etcd3/metrics), with their labels.
APISERVER_METRICS = {
    "apiserver_request_total": ("counter", ("verb", "resource", "scope", "code")),
    "apiserver_request_duration_seconds": ("histogram", ("verb", "resource", "scope")),
    "etcd_request_duration_seconds": ("histogram", ("operation", "type")),
    "apiserver_flowcontrol_current_executing_requests": ("gauge", ("priority_level",
                                                                   "flow_schema")),
    "apiserver_flowcontrol_current_executing_seats": ("gauge", ("priority_level",
                                                                "flow_schema")),
    "apiserver_flowcontrol_current_inqueue_requests": ("gauge", ("priority_level",
                                                                 "flow_schema")),
    "apiserver_flowcontrol_rejected_requests_total": ("counter", ("priority_level",
                                                                  "flow_schema", "reason")),
    "apiserver_current_inflight_requests": ("gauge", ("request_kind",)),
}
CP_START = 1767225600  # 2026-01-01T00:00:00Z
CP_STEP = 30
CP_END = CP_START + 3 * 3600
SPIKE = (CP_START + 90 * 60, CP_START + 120 * 60)
SLOW = "10.0.0.3:6443"
# Requests of each (verb, resource) per step: the slow instance serves a tenth of them.
PER_STEP = {"10.0.0.1:6443": 900, "10.0.0.2:6443": 900, SLOW: 200}
BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 1.0, 2.0, 4.0, 8.0, 60.0)
VERBS = ("GET", "LIST", "CREATE")
RESOURCES = ("pods", "configmaps")
WATCHES = 100  # WATCH requests per step and resource, each lasting 30 s
APF = (("workload-low", "service-accounts"), ("global-default", "global-default"),
       ("exempt", "exempt"))
ETCD = {"get": "*core.Pod", "list": "*core.ConfigMap"}


def apiserver_openmetrics() -> str:
    """Three API servers for three hours. Each (verb, resource) takes 80 ms, WATCH 30 s,
    etcd 10 ms. During SPIKE, 5% of the slow instance's requests take 3 s (its etcd calls
    1.5 s), 5 requests per step are rejected with queue-full and 40 wait in queue."""
    times = range(CP_START, CP_END + 1, CP_STEP)

    def spiking(instance: str, t: int) -> bool:
        return instance == SLOW and SPIKE[0] <= t < SPIKE[1]

    out: list[str] = []

    def labels(instance: str, **extra: str) -> str:
        pairs = {"job": "apiserver", "instance": instance, **extra}
        return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"

    def counter(name: str, instance: str, increments: Any, **extra: str) -> None:
        total = 0.0
        for t in times:
            total += increments(t)
            out.append(f"{name}{labels(instance, **extra)} {total} {t}")

    def histogram(name: str, instance: str, observe: Any, **extra: str) -> None:
        """``observe(t)`` -> [(seconds, count)] of the step ending at t."""
        buckets = dict.fromkeys(BUCKETS, 0.0)
        total = count = 0.0
        for t in times:
            for seconds, n in observe(t):
                for le in BUCKETS:
                    buckets[le] += n if seconds <= le else 0
                total += seconds * n
                count += n
            for le, cumulative in buckets.items():
                out.append(f"{name}_bucket{labels(instance, **extra, le=str(le))} "
                           f"{cumulative} {t}")
            out.append(f'{name}_bucket{labels(instance, **extra, le="+Inf")} {count} {t}')
            out.append(f"{name}_sum{labels(instance, **extra)} {total} {t}")
            out.append(f"{name}_count{labels(instance, **extra)} {count} {t}")

    def gauge(name: str, instance: str, value: Any, **extra: str) -> None:
        out.extend(f"{name}{labels(instance, **extra)} {float(value(t))} {t}" for t in times)

    def family(name: str) -> None:
        kind = APISERVER_METRICS[name][0]
        out.append(f"# TYPE {name.removesuffix('_total')} {kind}")

    family("apiserver_request_total")
    for i, per_step in PER_STEP.items():
        for verb in (*VERBS, "WATCH"):
            for resource in RESOURCES:
                scope = "namespace"
                n = WATCHES if verb == "WATCH" else per_step
                counter("apiserver_request_total", i, lambda t, n=n: n, verb=verb,
                        resource=resource, scope=scope, code="200")
            counter("apiserver_request_total", i, lambda t: 1, verb=verb, resource="pods",
                    scope="namespace", code="500")
        counter("apiserver_request_total", i, lambda t, i=i: 5 if spiking(i, t) else 0,
                verb="LIST", resource="pods", scope="cluster", code="429")
    family("apiserver_request_duration_seconds")
    for i, per_step in PER_STEP.items():
        for verb in (*VERBS, "WATCH"):
            for resource in RESOURCES:
                def observe(t: int, i: str = i, n: int = per_step, verb: str = verb) -> Any:
                    if verb == "WATCH":
                        return [(30.0, WATCHES)]
                    slow = n // 20 if spiking(i, t) else 0
                    return [(0.08, n - slow), (3.0, slow)]

                histogram("apiserver_request_duration_seconds", i, observe, verb=verb,
                          resource=resource, scope="namespace")
    family("etcd_request_duration_seconds")
    for i in PER_STEP:
        for operation, kind in ETCD.items():
            histogram("etcd_request_duration_seconds", i,
                      lambda t, i=i: [(0.01, 95), (1.5 if spiking(i, t) else 0.01, 5)],
                      operation=operation, type=kind)
    for name, normal, spike in (("apiserver_flowcontrol_current_executing_requests", 3, 30),
                                ("apiserver_flowcontrol_current_executing_seats", 4, 40),
                                ("apiserver_flowcontrol_current_inqueue_requests", 0, 40)):
        family(name)
        for i in PER_STEP:
            for level, schema in APF:
                gauge(name, i, lambda t, i=i, level=level, high=spike, low=normal: high
                      if spiking(i, t) and level == "workload-low" else low,
                      priority_level=level, flow_schema=schema)
    family("apiserver_flowcontrol_rejected_requests_total")
    for i in PER_STEP:
        counter("apiserver_flowcontrol_rejected_requests_total", i,
                lambda t, i=i: 5 if spiking(i, t) else 0, priority_level="workload-low",
                flow_schema="service-accounts", reason="queue-full")
    family("apiserver_current_inflight_requests")
    for i in PER_STEP:
        gauge("apiserver_current_inflight_requests", i,
              lambda t, i=i: 180 if spiking(i, t) else 20, request_kind="readOnly")
        gauge("apiserver_current_inflight_requests", i, lambda t: 5, request_kind="mutating")
    return "\n".join(out) + "\n# EOF\n"


def panel_expr(board: dict[str, Any], title: str, ref: str = "A",
               values: dict[str, str] = CONTROL_PLANE_SUBSTITUTIONS) -> str:
    panel = next(p for p in all_panels(board) if p["title"] == title)
    target = next(t for t in panel["targets"] if t["refId"] == ref)
    return substitute(target["expr"], values)


def by_label(url: str, promql: str, at: float, *labels: str) -> dict[str, float]:
    """An instant query's values keyed by ``labels``' values joined by ','."""
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql, "time": at},
                     timeout=10).json()
    assert body["status"] == "success", (promql, body)
    return {",".join(r["metric"].get(label, "") for label in labels): float(r["value"][1])
            for r in body["data"]["result"]}


def test_control_plane_queries_over_backfilled_apiserver_series(tmp_path: Path) -> None:
    """Every query of the Control plane dashboard returns data from kube-apiserver series
    backfilled with promtool, and its latency is the slow instance's: by Prometheus'
    linear interpolation in the (2, 4] bucket where 5% of that instance's requests fall,
    p99 = 2 + 2 * (0.99 * 200 - 190) / 10 = 3.6 s, while the buckets summed over all
    instances (0.5% slow) put p99 at 0.05 + 0.05 * 1980 / 1990 s, and an average of the
    instances' p99 would be about 1.27 s."""
    need_prometheus()
    exprs = dashboard_exprs(CONTROL_PLANE)
    assert len(exprs) >= 20
    used = set().union(*(metric_names(expr) for _, expr in exprs))
    histograms = {f"{n}_bucket" for n, (kind, _) in APISERVER_METRICS.items()
                  if kind == "histogram"}
    plain = {n for n, (kind, _) in APISERVER_METRICS.items() if kind != "histogram"}
    assert used == histograms | plain  # every upstream metric listed, and only those

    om = tmp_path / "apiserver.om"
    om.write_text(apiserver_openmetrics())
    tsdb = tmp_path / "tsdb"
    out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om),
                          str(tsdb)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    board = load_dashboards()[CONTROL_PLANE]
    during, before = SPIKE[0] + 15 * 60, SPIKE[0] - 30 * 60
    with prometheus(tmp_path, tsdb=tsdb) as prom:
        wait_for(lambda: instant(prom, "count(apiserver_request_total)", during)[1],
                 "the backfilled blocks to load", 60)
        empty, all_nan = [], []
        for where, expr in exprs:
            _, values = instant(prom, expr, during)
            if not values:
                empty.append(f"{where}: {expr}")
            elif all(v in ("NaN", "+Inf", "-Inf") for v in values):
                all_nan.append(f"{where}: {expr} -> {values}")
        assert not empty, "no data:\n" + "\n".join(empty)
        assert not all_nan, "no finite value:\n" + "\n".join(all_nan)

        per_instance = by_label(prom, panel_expr(board, "p99 latency per instance"), during,
                                "instance")
        assert per_instance == pytest.approx({SLOW: 3.6, "10.0.0.1:6443": 0.0995,
                                              "10.0.0.2:6443": 0.0995}, rel=1e-6)
        worst = panel_expr(board, "p99 latency, worst instance")
        assert by_label(prom, worst, during) == pytest.approx({"": 3.6}, rel=1e-6)
        assert by_label(prom, worst, before) == pytest.approx({"": 0.0995}, rel=1e-6)
        # The same data summed over instances hides the slow one: the data can tell.
        summed = worst.replace("max without (instance) (", "(").replace("le, instance", "le")
        assert by_label(prom, summed, during) == pytest.approx(
            {"": 0.05 + 0.05 * 1980 / 1990}, rel=1e-6)
        # WATCH (30 s, 3.6% of a healthy instance's requests) is left out of latency.
        assert by_label(prom, panel_expr(board, "p99 latency by verb, worst instance"),
                        during, "verb") == pytest.approx(dict.fromkeys(VERBS, 3.6), rel=1e-6)
        versus = panel_expr(board, "p99: API server vs etcd, worst instance", "B")
        assert by_label(prom, versus, during) == pytest.approx(
            {"": 1 + (0.99 * 100 - 95) / 5}, rel=1e-6)  # etcd: 5% in (1, 2]
        rejected = by_label(prom, panel_expr(board, "Rejections by flow schema and priority "
                                                    "level"), during, "flow_schema")
        assert rejected == pytest.approx({"service-accounts": 5 / CP_STEP}, rel=1e-6)
        queued = by_label(prom, panel_expr(board, "Requests queued by priority level and "
                                                  "flow schema"), during, "priority_level")
        assert queued == {"workload-low": 40.0, "global-default": 0.0, "exempt": 0.0}
        inflight = by_label(prom, panel_expr(board, "Requests in flight per instance"),
                            during, "instance", "request_kind")
        assert inflight[f"{SLOW},readOnly"] == 180.0
        assert inflight["10.0.0.1:6443,readOnly"] == 20.0


if __name__ == "__main__":  # list the expressions the end-to-end test runs
    for where, expr in dashboard_exprs() + rule_exprs():
        print(f"{where}\n    {expr}", file=sys.stdout)


# -- the API server load dashboard over a replay's backfilled request metrics ------------

def test_apiserver_load_queries_over_a_replays_backfill(tmp_path: Path) -> None:
    """``lunettes replay --apiserver-load --openmetrics`` of simulated traffic with a new
    client listing every Pod and a throttled operator, backfilled with promtool: every
    query of the API server load dashboard returns data; the top talker is the new client
    while it runs; the 429 panel names the throttled operator alone; the p99 of LIST falls
    in the bucket of the simulator's own p99 over the query's window."""
    need_prometheus()
    from lunettes.apiserver.counts import LATENCY_BUCKETS
    from lunettes.cli.main import main
    from lunettes.simulate.apiserver_traffic import Injection, generate

    new, throttled = Injection("new_client", "step", 30, 45, 150.0), Injection(
        "throttled", "step", 60, 75, 100.0)
    traffic = generate(3, intervals=100, nodes=4, injections=[new, throttled])
    log, om, tsdb = tmp_path / "audit.log", tmp_path / "load.om", tmp_path / "tsdb"
    log.write_bytes(b"".join(traffic.lines()))
    assert main(["replay", str(log), "--no-store", "--format", "none", "--apiserver-load",
                 "--openmetrics", str(om)]) == 0
    out = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om),
                          str(tsdb)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    exprs = dashboard_exprs(APISERVER_LOAD)
    assert len(exprs) >= 15
    exposed = {line.split()[2] for line in om.read_text().splitlines()
               if line.startswith("# TYPE ")}
    used = set().union(*(metric_names(expr) for _, expr in exprs))
    assert {re.sub(r"_(total|bucket)$", "", n) for n in used} <= exposed
    board = load_dashboards()[APISERVER_LOAD]
    start = traffic.start_s
    during_new, during_throttled = start + 40 * 60, start + 70 * 60
    with prometheus(tmp_path, tsdb=tsdb) as prom:
        wait_for(lambda: instant(prom, "count(lunettes_apiserver_requests_total)",
                                 during_new)[1], "the backfilled blocks to load", 60)
        empty, all_nan = [], []
        for where, expr in exprs:
            _, values = instant(prom, expr, during_throttled)
            if not values:
                empty.append(f"{where}: {expr}")
            elif all(v in ("NaN", "+Inf", "-Inf") for v in values):
                all_nan.append(f"{where}: {expr} -> {values}")
        assert not empty, "no data:\n" + "\n".join(empty)
        assert not all_nan, "no finite value:\n" + "\n".join(all_nan)

        def panel(title: str) -> str:
            return panel_expr(board, title, values=LOAD_SUBSTITUTIONS)

        rogue = new.truth()["user_agent"]
        talkers = by_label(prom, panel("Top talkers (time range)"), during_new, "client")
        assert max(talkers, key=lambda c: talkers[c]) == rogue
        operator = throttled.truth()["user_agent"]
        rejected = by_label(prom, panel("Answered 429 by client, verb and resource"),
                            during_throttled, "client", "verb", "resource")
        assert set(rejected) == {f"{operator},list,pods"} and rejected[
            f"{operator},list,pods"] > 0
        p99 = by_label(prom, panel("p99 latency by verb, worst instance"), during_new,
                       "verb")["list"]
        bounds = (0.0, *LATENCY_BUCKETS, float("inf"))
        accepted = []
        for minutes in (5, 4):  # the window, closed or left-open on its first sample
            since_us = (during_new - minutes * 60) * 1_000_000
            lists = sorted(r.latency_us / 1e6 for r in traffic.requests if r.verb == "list"
                           and since_us <= r.time_us < during_new * 1_000_000)
            truth = lists[math.ceil(0.99 * len(lists)) - 1]
            i = next(k for k in range(1, len(bounds)) if truth <= bounds[k])
            accepted.append((bounds[i - 1], bounds[i]))
        assert any(lo <= p99 <= hi for lo, hi in accepted), (p99, accepted)
