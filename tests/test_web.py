"""The web page in a real headless Chromium: search the failed Pods, open one, check that its
waterfall (user time drawn apart from platform time, the open stage shown open) and its
diagnosis card with evidence render what the API holds, then the SLO summary view. A
screenshot of the Pod view is saved to test-artifacts/web-pod.png. Every test runs twice:
with the shipped analyzers, and with the diagnosis and SLO analyzers renamed in
pipeline.yaml (the page finds their results by the roles /info names).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and
selenium (the test extra); skipped without them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

pytest.importorskip("fastapi", reason="needs the serve extra")
pytest.importorskip("selenium", reason="needs the test extra")
import httpx
from api_server import SAMPLE, serve
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from lunettes.cli.main import main

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    # every page records what its Content-Security-Policy blocked
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__blocked = []; document.addEventListener('securitypolicyviolation', "
        "e => window.__blocked.push(e.violatedDirective + ' ' + e.blockedURI));")})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module", params=["shipped names", "renamed analyzers"])
def base(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
         ) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("web")
    args = [str(SAMPLE), "--store", str(tmp / "store.db"), "--jaeger-url",
            "http://jaeger.test:16686"]
    if request.param == "renamed analyzers":
        config = tmp / "config"
        assert main(["init-config", str(config)]) == 0
        pipeline = yaml.safe_load((config / "pipeline.yaml").read_text())
        analyzers = pipeline["analyzers"]
        analyzers["why"] = {"type": "diagnosis", **analyzers.pop("diagnosis")}
        analyzers["delivery"] = {"type": "slo", **analyzers.pop("slo")}
        analyzers["delivery"]["needs"] = ["stages", "lifecycle", "why"]
        (config / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
        args += ["--config", str(config)]
    with serve(args, tmp) as url:
        yield url


def _roles(base: str) -> dict[str, str]:
    """The record key of the result playing each role (/info)."""
    results = httpx.get(f"{base}/api/v1/info").json()["results"]
    return {role: r["name"] for r in results for role in r["roles"]}


def _wait(driver: Any, css: str, timeout_s: float = 20) -> list[Any]:
    return WebDriverWait(driver, timeout_s).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, css) or None)


def _background(driver: Any, element: Any) -> str:
    style = driver.execute_script("const s = getComputedStyle(arguments[0]); "
                                  "return s.backgroundImage + ' ' + s.backgroundColor;", element)
    return str(style)


def test_find_a_failed_pod_and_see_its_waterfall_and_diagnosis(browser: Any, base: str) -> None:
    browser.get(f"{base}/")
    _wait(browser, "#pods-table tbody tr")
    Select(browser.find_element(By.CSS_SELECTOR, "#filters select[name=outcome]")
           ).select_by_visible_text("failed")
    browser.find_element(By.CSS_SELECTOR, "#search").click()
    WebDriverWait(browser, 20).until(lambda d: "outcome=failed" in d.current_url)
    rows = _wait(browser, "#pods-table tbody tr[data-outcome]")
    WebDriverWait(browser, 20).until(lambda d: all(
        r.get_attribute("data-outcome") == "failed"
        for r in d.find_elements(By.CSS_SELECTOR, "#pods-table tbody tr")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#pods-table tbody tr")
    failed = httpx.get(f"{base}/api/v1/pods", params={"outcome": "failed", "limit": 500}).json()
    assert len(rows) == len(failed["items"]) > 0
    # The first failed Pod with a user-owned stage still open: readiness that never came.
    chosen = None
    for item in failed["items"]:
        trace = httpx.get(f"{base}/api/v1/pods/{item['uid']}/trace").json()
        if any(s["owner"] == "user" and s["open"] for s in trace["spans"]):
            chosen = item
            break
    assert chosen is not None
    pod = httpx.get(f"{base}/api/v1/pods/{chosen['uid']}").json()
    link = browser.find_element(By.CSS_SELECTOR, f"tr[data-uid='{chosen['uid']}'] a.pod-link")
    link.click()

    stage_rows = _wait(browser, "#waterfall .wf-row")
    assert browser.find_element(By.CSS_SELECTOR, "#pod-title").text == \
        f"{pod['namespace']}/{pod['name']}"
    assert [r.get_attribute("data-stage") for r in stage_rows] == [s["stage"] for s in
                                                                    trace["spans"]]
    bars = browser.find_elements(By.CSS_SELECTOR, "#waterfall .bar")
    assert all(b.size["width"] >= 1 for b in bars)
    user = browser.find_elements(By.CSS_SELECTOR, "#waterfall .bar.owner-user")
    platform = browser.find_elements(By.CSS_SELECTOR, "#waterfall .bar.owner-platform")
    assert user and platform
    assert _background(browser, user[0]) != _background(browser, platform[0])
    # one story: each row is drawn for the owner of most of its time by the SLO's account,
    # and the SLO's user time inside a platform row is drawn as user time, part by part
    assert [r.get_attribute("data-owner") for r in stage_rows] == [
        s["effective_owner"] for s in pod["stages"]]
    for row, span in zip(stage_rows, trace["spans"], strict=True):
        parts = row.find_elements(By.CSS_SELECTOR, ".bar.part.owner-user")
        if span["owner"] == "platform":
            assert len(parts) == len(span["user_intervals_unix_nano"]), span["stage"]
    open_rows = browser.find_elements(By.CSS_SELECTOR, "#waterfall .wf-row[data-open=true]")
    assert {r.get_attribute("data-stage") for r in open_rows} == {
        s["stage"] for s in trace["spans"] if s["open"]}
    assert all(r.find_elements(By.CSS_SELECTOR, ".bar.open") for r in open_rows)
    assert all("open" in r.find_element(By.CSS_SELECTOR, ".wf-dur").text for r in open_rows)
    root = browser.find_element(By.CSS_SELECTOR, "#waterfall .wf-row.root .bar")
    track = browser.find_element(By.CSS_SELECTOR, "#waterfall .wf-row.root .wf-track")
    assert root.size["width"] > 0.9 * track.size["width"]  # the root spans the axis

    roles = _roles(base)
    diagnosis = pod[roles["diagnosis"]]
    reason = browser.find_element(By.CSS_SELECTOR, "#diagnosis .reason")
    assert reason.get_attribute("data-reason") == diagnosis["reason"]
    assert diagnosis["message"] in browser.find_element(By.CSS_SELECTOR, "#diagnosis").text
    evidence = browser.find_elements(By.CSS_SELECTOR, "#evidence tbody tr")
    assert len(evidence) == len(diagnosis["evidence"]) > 0
    assert diagnosis["evidence"][0]["message"][:40] in evidence[0].text
    jaeger_base = pod["links"]["jaeger"].rsplit("/trace/", 1)[0]
    for row, item in zip(evidence, diagnosis["evidence"], strict=True):
        if item.get("audit_id"):  # opens kube-apiserver's spans of that request in Jaeger
            href = row.find_element(By.CSS_SELECTOR, "a.audit-link").get_attribute("href")
            query = parse_qs(urlsplit(href).query)
            assert href.startswith(f"{jaeger_base}/search?")
            assert (query["service"], json.loads(query["tags"][0])) == (
                ["apiserver"], {"audit-id": item["audit_id"]})
    slo = browser.find_element(By.CSS_SELECTOR, "#slo-card").text
    assert pod[roles["slo"]]["result"] in slo
    jaeger = browser.find_element(By.CSS_SELECTOR, "#jaeger-link").get_attribute("href")
    assert jaeger == pod["links"]["jaeger"]
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "web-pod.png"))
    assert (ARTIFACTS / "web-pod.png").stat().st_size > 10_000


def test_slo_summary_view(browser: Any, base: str) -> None:
    summary = httpx.get(f"{base}/api/v1/slo/summary").json()
    browser.get(f"{base}/#/slo")
    rows = _wait(browser, "#slo-groups tbody tr")
    assert len(rows) == len(summary["groups"])
    first = summary["groups"][0]
    assert rows[0].text.split()[:3] == [first["namespace"], first["slo_class"],
                                        str(first["count"])]
    overall = browser.find_element(By.CSS_SELECTOR, "#slo-overall").text
    assert str(summary["overall"]["count"]) in overall
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web-slo.png"))


def test_bad_filter_shows_the_api_message(browser: Any, base: str) -> None:
    browser.get(f"{base}/#/pods?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z")
    error = WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#pods-error").text or None)
    assert "400" in error and "since: must not be after until" in error


def test_pages_run_under_their_content_security_policy(browser: Any, base: str) -> None:
    """The page (its list, a Pod's waterfall with styled bars, the SLO view) and the API
    docs work with the server's CSP in force, and the browser blocked nothing."""
    assert "script-src 'self';" in httpx.get(f"{base}/").headers["content-security-policy"]
    browser.get(f"{base}/")
    link = _wait(browser, "#pods-table tbody tr a.pod-link")[0]
    link.click()
    bars = _wait(browser, "#waterfall .bar")
    track = browser.find_element(By.CSS_SELECTOR, "#waterfall .wf-row.root .wf-track")
    root = browser.find_element(By.CSS_SELECTOR, "#waterfall .wf-row.root .bar")
    assert root.size["width"] > 0.9 * track.size["width"]  # its width: an inline style
    assert len(bars) > 1
    assert browser.execute_script("return window.__blocked") == []
    browser.get(f"{base}/#/slo")
    _wait(browser, "#slo-groups tbody tr")
    assert browser.execute_script("return window.__blocked") == []
    browser.get(f"{base}/docs")
    _wait(browser, ".swagger-ui .opblock", 30)
    assert browser.execute_script("return window.__blocked") == []
