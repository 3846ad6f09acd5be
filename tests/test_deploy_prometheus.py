"""deploy/prometheus/: promtool checks the compose Prometheus config and the rules, and
runs the rules' unit tests (lunettes-rules.test.yaml: input series, alerts expected to
fire and not to fire). Needs Debian's prometheus package (.ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"


def promtool(*args: str) -> str:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (.ci/run installs the prometheus package)")
    out = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120,
                         cwd=PROMETHEUS)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_promtool_checks_the_config_and_its_rules() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 14 rules found" in promtool("check", "rules", "lunettes-rules.yaml")


def test_promtool_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "lunettes-rules.test.yaml")


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    rules = yaml.safe_load((PROMETHEUS / "lunettes-rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "lunettes-rules.test.yaml").read_text())
    cases = [case for t in tests["tests"] for case in t.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fired == alerts, alerts - fired
    assert quiet == alerts, alerts - quiet
