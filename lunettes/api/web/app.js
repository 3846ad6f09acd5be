// lunettes web page: plain JS over /api/v1, no build step, no CDN.
// Views (hash routes): #/pods?filters, #/pod/<uid>, #/slo?window, #/reasons.
"use strict";

const API = "/api/v1";
const $ = (sel, root = document) => root.querySelector(sel);

// Build DOM safely: text is always set as text, never parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;  // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const badge = (value) => value ? h("span", {class: `badge b-${value}`}, value) : h("span", {class: "muted"}, "–");
const secs = (v, digits = 2) => (v === null || v === undefined) ? "–" : Number(v).toFixed(digits);
const shortTime = (t) => t ? t.replace("T", " ").replace(/(\.\d{3})\d*Z$/, "$1Z") : "–";

// -- API calls, with the bearer token when one is set ---------------------------------
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, params) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
  const headers = {Accept: "application/json"};
  const token = sessionStorage.getItem("lunettes-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url, {headers});
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    if (res.status === 401) askToken();
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    throw new ApiError(res.status, detail || `HTTP ${res.status}`);
  }
  return body;
}

function askToken() {
  const dialog = $("#token-dialog");
  if (!dialog.open) dialog.showModal();
}
$("#token-button").addEventListener("click", askToken);
$("#token-dialog").addEventListener("close", () => {
  if ($("#token-dialog").returnValue === "ok") {
    sessionStorage.setItem("lunettes-token", $("#token-input").value.trim());
    route();
  }
});

function showError(id, err) {
  const el = $(id);
  el.hidden = !err;
  el.textContent = err ? (err.status ? `${err.status}: ${err.message}` : String(err)) : "";
}

// -- Pods list -------------------------------------------------------------------------
let nextCursor = null;
let currentFilters = {};

function podRow(p) {
  const link = h("a", {href: `#/pod/${encodeURIComponent(p.uid)}`, class: "pod-link"}, `${p.namespace}/${p.name}`);
  return h("tr", {"data-uid": p.uid, "data-outcome": p.outcome},
    h("td", {class: "mono"}, shortTime(p.created)),
    h("td", {}, link),
    h("td", {}, p.node || h("span", {class: "muted"}, "–")),
    h("td", {}, badge(p.outcome)),
    h("td", {}, badge(p.slo_result)),
    h("td", {class: "num"}, secs(p.platform_s)),
    h("td", {class: "num"}, secs(p.duration_s)),
    h("td", {}, p.reason ? h("code", {}, p.reason) : h("span", {class: "muted"}, "–")));
}

async function loadPods(filters, append) {
  showError("#pods-error", null);
  const tbody = $("#pods-table tbody");
  if (!append) { tbody.replaceChildren(); nextCursor = null; }
  try {
    const page = await api("/pods", {...filters, limit: 50, cursor: append ? nextCursor : null});
    tbody.append(...page.items.map(podRow));
    nextCursor = page.next_cursor;
    $("#more").hidden = !nextCursor;
    $("#pods-empty").hidden = tbody.children.length > 0;
    $("#pods-table").dataset.loaded = "true";
  } catch (err) { showError("#pods-error", err); $("#more").hidden = true; }
}

function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) if (String(v).trim()) out[k] = String(v).trim();
  return out;
}

function fillForm(form, values) {
  for (const el of form.elements) if (el.name) el.value = values[el.name] || (el.tagName === "SELECT" ? el.options[0].value : "");
}

$("#filters").addEventListener("submit", (e) => {
  e.preventDefault();
  location.hash = "#/pods?" + new URLSearchParams(formValues(e.target)).toString();
});
$("#filters").addEventListener("reset", () => setTimeout(() => { location.hash = "#/pods"; }, 0));
$("#more").addEventListener("click", () => loadPods(currentFilters, true));

// -- One Pod: header, waterfall, diagnosis, SLO ---------------------------------------
function niceStep(span) {
  const raw = span / 6;
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

function fmtOffset(s) {
  if (s >= 120) return `${(s / 60).toFixed(s % 60 ? 1 : 0)} min`;
  if (s >= 1 || s === 0) return `${+s.toFixed(1)} s`;
  return `${Math.round(s * 1000)} ms`;
}

function waterfall(pod, spans) {
  const times = spans.flatMap((s) => [s.start_unix_nano / 1e3, s.end_unix_nano / 1e3]);
  const wrap = h("div", {class: "card", id: "waterfall-card"}, h("h2", {}, "Delivery waterfall"));
  if (!spans.length) { wrap.append(h("p", {class: "muted"}, "No stage could be placed on a time axis.")); return wrap; }
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const span = Math.max(t1 - t0, 1000); // at least 1 ms wide
  const pct = (us) => ((us - t0) / span) * 100;
  wrap.append(h("div", {class: "legend"},
    h("span", {}, h("i", {class: "owner-platform"}), "platform time"),
    h("span", {}, h("i", {class: "owner-user"}), "user time (excluded from the SLO)"),
    h("span", {}, h("i", {class: "owner-platform", style: "-webkit-mask-image:linear-gradient(90deg,#000 40%,transparent);mask-image:linear-gradient(90deg,#000 40%,transparent)"}), "open: not ended")));
  const step = niceStep(span / 1e6);
  const ticks = h("div", {class: "ticks"});
  for (let s = 0; s <= span / 1e6 + 1e-9; s += step) ticks.append(h("span", {class: "tick", style: `left:${(s * 1e6 / span) * 100}%`}, fmtOffset(s)));
  const wf = h("div", {class: "waterfall", id: "waterfall"}, h("div", {class: "wf-axis"}, h("div", {class: "muted"}, "stage"), ticks, h("div", {})));
  for (const s of spans) {
    const left = pct(s.start_unix_nano / 1e3), right = pct(s.end_unix_nano / 1e3);
    const bar = h("div", {
      class: `bar owner-${s.owner}${s.open ? " open" : ""}`,
      style: `left:${left}%;width:${Math.max(right - left, 0.2)}%`,
      title: `${s.name} (${s.owner})\n${s.start} → ${s.open ? "open" : s.end}\n${secs(s.duration_s, 3)} s`,
    });
    wf.append(h("div", {class: `wf-row ${s.parent_span_id ? "child" : "root"}`, "data-stage": s.stage, "data-owner": s.owner, "data-open": String(s.open)},
      h("div", {class: "wf-label", title: s.name}, s.stage, s.instance ? h("span", {class: "inst"}, ` ${s.instance}`) : null),
      h("div", {class: "wf-track"}, bar, ...ownerParts(s, pct)),
      h("div", {class: "wf-dur"}, s.open ? `open ${secs(s.duration_s)} s+` : `${secs(s.duration_s)} s`)));
  }
  wrap.append(wf);
  return wrap;
}

// The parts of a bar owned by the other side, exactly as the SLO counts them: the user
// time inside a platform-owned bar, the platform time inside a user-owned one.
function ownerParts(s, pct) {
  const start = s.start_unix_nano, end = s.end_unix_nano;
  const user = (s.user_intervals_unix_nano || []).map(([a, b]) => [Math.max(a, start), Math.min(b, end)]).filter(([a, b]) => b > a);
  let parts = user;
  if (s.owner === "user") {  // the gaps between the user intervals
    parts = [];
    let at = start;
    for (const [a, b] of user) { if (a > at) parts.push([at, a]); at = Math.max(at, b); }
    if (end > at) parts.push([at, end]);
  }
  const other = s.owner === "user" ? "platform" : "user";
  return parts.map(([a, b]) => h("div", {
    class: `bar part owner-${other}`,
    style: `left:${pct(a / 1e3)}%;width:${Math.max(pct(b / 1e3) - pct(a / 1e3), 0.2)}%`,
    title: `${other} time in ${s.name}: ${secs((b - a) / 1e9, 3)} s`,
  }));
}

function diagnosisCard(d) {
  const card = h("div", {class: "card", id: "diagnosis"}, h("h2", {}, "Diagnosis"));
  if (!d || !d.reason) {
    card.append(h("p", {class: "muted reason-none"}, "No finding: nothing went wrong that the audit log shows."));
    if (d && d.last_stage) card.append(h("p", {class: "muted"}, `Last stage reached: ${d.last_stage}`));
    return card;
  }
  card.append(
    h("div", {class: "diag-reason reason", "data-reason": d.reason}, d.reason, d.so_far ? h("span", {class: "muted"}, " (so far)") : null),
    h("dl", {class: "kv"},
      h("dt", {}, "who must act"), h("dd", {class: `diag-${d.owner}`}, d.owner || "–"),
      h("dt", {}, "stage"), h("dd", {}, d.stage || "–"),
      h("dt", {}, "last stage reached"), h("dd", {}, d.last_stage || "–"),
      h("dt", {}, "message"), h("dd", {class: "diag-message"}, d.message || "–")),
    d.hint ? h("div", {class: "hint"}, d.hint) : null);
  const ev = d.evidence || [];
  card.append(h("h3", {style: "margin-top:12px"}, `Evidence (${ev.length})`));
  if (ev.length) {
    card.append(h("table", {class: "evidence", id: "evidence"},
      h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "from"), h("th", {}, "op"), h("th", {}, "reason"), h("th", {}, "message"), h("th", {}, "audit ID"))),
      h("tbody", {}, ev.map((e) => h("tr", {},
        h("td", {class: "mono"}, shortTime(e.time)), h("td", {}, e.source || "–"), h("td", {}, e.op || "–"),
        h("td", {}, e.reason || "–"), h("td", {class: "msg"}, e.container ? `[${e.container}] ` : "", e.message || ""),
        h("td", {class: "mono muted"}, auditCell(e.audit_id || "")))))));
  }
  if ((d.secondary || []).length) {
    card.append(h("h3", {style: "margin-top:12px"}, "Also seen"),
      h("ul", {}, d.secondary.map((s) => h("li", {}, h("code", {}, s.code || s.reason || "?"), ` ${s.message || ""}`, s.count > 1 ? ` (×${s.count})` : ""))));
  }
  return card;
}

function sloCard(slo) {
  const card = h("div", {class: "card", id: "slo-card"}, h("h2", {}, "Delivery SLO"));
  if (!slo) { card.append(h("p", {class: "muted"}, "No SLO result.")); return card; }
  card.append(h("div", {}, badge(slo.result), " ", h("span", {class: "muted"}, `class ${slo.class || "–"}, deadline ${secs(slo.deadline_s, 0)} s`)));
  if (slo.why) card.append(h("p", {class: "muted"}, slo.why));
  const total = slo.total_s || 0;
  if (total > 0) {
    const p = Math.min(100, (slo.platform_s / total) * 100);
    card.append(h("div", {class: "slo-bar", title: "platform vs user time"},
      h("div", {class: "platform", style: `width:${p}%`}), h("div", {class: "user", style: `width:${100 - p}%`})));
  }
  card.append(h("dl", {class: "kv"},
    h("dt", {}, "platform time"), h("dd", {}, `${secs(slo.platform_s)} s`),
    h("dt", {}, "user time"), h("dd", {}, `${secs(slo.user_s)} s`),
    h("dt", {}, "total"), h("dd", {}, `${secs(slo.total_s)} s`),
    h("dt", {}, "pod start SLI"), h("dd", {}, `${secs(slo.pod_start_sli_s)} s`)));
  return card;
}

async function loadPod(uid) {
  showError("#pod-error", null);
  const root = $("#pod");
  root.replaceChildren(h("p", {class: "muted"}, "Loading…"));
  try {
    const [pod, trace] = await Promise.all([api(`/pods/${encodeURIComponent(uid)}`), api(`/pods/${encodeURIComponent(uid)}/trace`)]);
    const links = [h("a", {href: pod.links.self, target: "_blank"}, "JSON"), " · ", h("a", {href: pod.links.trace, target: "_blank"}, "spans")];
    jaegerBase = pod.links.jaeger ? pod.links.jaeger.replace(/\/trace\/[^/]*$/, "") : null;
    if (pod.links.jaeger) links.push(" · ", h("a", {href: pod.links.jaeger, target: "_blank", rel: "noopener", id: "jaeger-link"}, "trace in Jaeger"));
    const head = h("div", {class: "card"},
      h("div", {class: "pod-head"}, h("h1", {id: "pod-title"}, `${pod.namespace}/${pod.name}`), badge(pod.outcome),
        pod.partial ? h("span", {class: "badge"}, "partial log") : null, h("span", {class: "spacer"}), h("span", {}, links)),
      h("dl", {class: "kv"},
        h("dt", {}, "uid"), h("dd", {class: "mono"}, pod.uid),
        h("dt", {}, "trace id"), h("dd", {class: "mono"}, trace.trace_id),
        h("dt", {}, "node"), h("dd", {}, pod.node || "–"),
        h("dt", {}, "owner"), h("dd", {}, pod.owner_kind ? `${pod.owner_kind}/${pod.owner_name}` : "–"),
        h("dt", {}, "created"), h("dd", {class: "mono"}, shortTime(pod.created)),
        h("dt", {}, "finished"), h("dd", {class: "mono"}, shortTime(pod.finished)),
        h("dt", {}, "incarnations"), h("dd", {}, h("a", {href: `#/pods?namespace=${encodeURIComponent(pod.namespace)}&name_prefix=${encodeURIComponent(pod.name)}`}, "Pods with this name"))));
    root.replaceChildren(head, waterfall(pod, trace.spans), h("div", {class: "grid2"}, diagnosisCard(pod[resultKeys.diagnosis]), sloCard(pod[resultKeys.slo])));
    document.title = `${pod.namespace}/${pod.name} – lunettes`;
  } catch (err) { root.replaceChildren(); showError("#pod-error", err); }
}

// -- SLO summary ----------------------------------------------------------------------
function ratioCell(r) {
  if (r === null || r === undefined) return h("td", {class: "muted"}, "–");
  return h("td", {}, h("span", {class: "ratio"}, h("span", {style: `width:${r * 100}%`})), `${(r * 100).toFixed(1)} %`);
}

function sloRow(g, label) {
  const q = g.delivery_s;
  return h("tr", {},
    ...label.map((l) => h("td", {}, l)),
    h("td", {class: "num"}, g.count),
    ...["met", "violated", "killed", "in_progress", "not_applicable"].map((k) => h("td", {class: "num"}, g.results[k] || 0)),
    ratioCell(g.success_ratio),
    h("td", {class: "num"}, secs(q.p50)), h("td", {class: "num"}, secs(q.p90)), h("td", {class: "num"}, secs(q.p99)));
}

async function loadSlo(filters) {
  showError("#slo-error", null);
  const root = $("#slo");
  try {
    const s = await api("/slo/summary", filters);
    const o = s.overall;
    const figure = (label, value) => h("div", {class: "figure"}, h("b", {}, value), h("span", {class: "muted"}, label));
    const head = ["namespace", "class", "Pods", "met", "violated", "killed", "in progress", "n/a", "success", "p50 s", "p90 s", "p99 s"];
    root.replaceChildren(...[
      h("div", {class: "figures", id: "slo-overall"},
        figure("Pods", o.count),
        figure("success ratio (met / met+violated)", o.success_ratio === null ? "–" : `${(o.success_ratio * 100).toFixed(1)} %`),
        figure("delivered", o.delivered),
        figure("p50 platform delivery", `${secs(o.delivery_s.p50)} s`),
        figure("p90", `${secs(o.delivery_s.p90)} s`),
        figure("p99", `${secs(o.delivery_s.p99)} s`)),
      s.truncated ? h("p", {class: "error"}, "The window holds more Pods than one summary reads: narrow it.") : null,
      h("h3", {}, "By namespace and SLO class"),
      h("table", {class: "list", id: "slo-groups"},
        h("thead", {}, h("tr", {}, head.map((c, i) => h("th", {class: i >= 2 && i !== 8 ? "num" : null}, c)))),
        h("tbody", {}, s.groups.map((g) => sloRow(g, [g.namespace, g.slo_class]))),
        h("tfoot", {}, sloRow(o, [h("b", {}, "all"), ""])))].filter(Boolean));
  } catch (err) { root.replaceChildren(); showError("#slo-error", err); }
}

$("#slo-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  location.hash = "#/slo?" + new URLSearchParams(formValues(e.target)).toString();
});

// -- Reason codes ---------------------------------------------------------------------
// kube-apiserver's own spans of a request carry its audit ID (attribute audit-id): with a
// Jaeger URL configured (the Pod's Jaeger link), an evidence row's audit ID opens them in
// Jaeger's search (service "apiserver", kube-apiserver's service name).
let jaegerBase = null;
function auditCell(id) {
  if (!id) return "";
  if (!jaegerBase) return h("span", {title: id}, id.slice(0, 8));
  const tags = encodeURIComponent(JSON.stringify({"audit-id": id}));
  return h("a", {href: `${jaegerBase}/search?service=apiserver&tags=${tags}`, target: "_blank",
                 rel: "noopener", title: `kube-apiserver spans of request ${id}`,
                 class: "audit-link"}, id.slice(0, 8));
}

let reasonsCache = null;
async function reasons() {
  if (!reasonsCache) reasonsCache = await api("/reasons");
  return reasonsCache;
}

async function loadReasons() {
  showError("#reasons-error", null);
  try {
    const r = await reasons();
    $("#reasons").replaceChildren(h("table", {class: "list"},
      h("thead", {}, h("tr", {}, ["code", "owner", "stage", "when late but delivered", "remedy"].map((c) => h("th", {}, c)))),
      h("tbody", {}, r.reasons.map((c) => h("tr", {},
        h("td", {}, h("a", {href: `#/pods?reason=${encodeURIComponent(c.code)}`}, h("code", {}, c.code))),
        h("td", {class: `diag-${c.owner}`}, c.owner), h("td", {}, c.stage), h("td", {}, c.recovered || "–"),
        h("td", {style: "white-space:normal"}, c.hint))))));
  } catch (err) { showError("#reasons-error", err); }
}

// -- Routing --------------------------------------------------------------------------
function show(view) {
  for (const el of document.querySelectorAll(".view")) el.hidden = el.id !== `view-${view}`;
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === (view === "pod" ? "pods" : view));
}

function route() {
  const hash = location.hash || "#/pods";
  const [path, query] = hash.slice(1).split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  if (path.startsWith("/pod/")) {
    show("pod");
    loadPod(decodeURIComponent(path.slice(5)));
  } else if (path === "/slo") {
    show("slo");
    fillForm($("#slo-filters"), params);
    loadSlo(params);
  } else if (path === "/reasons") {
    show("reasons");
    loadReasons();
  } else {
    show("pods");
    document.title = "lunettes";
    currentFilters = params;
    fillForm($("#filters"), params);
    loadPods(params, false);
  }
}

// The record keys of the results playing the diagnosis and SLO roles (/info names them;
// their role names until it answers).
const resultKeys = {diagnosis: "diagnosis", slo: "slo"};
window.addEventListener("hashchange", route);
route();
api("/info").then((i) => {
  $("#store-info").textContent = `${i.pods} Pods · ${i.store}`;
  for (const r of [...(i.results || [])].reverse()) for (const role of r.roles) resultKeys[role] = r.name;
}).catch(() => {});
reasons().then((r) => { $("#reason-codes").replaceChildren(...r.reasons.map((c) => h("option", {value: c.code}))); }).catch(() => {});
