"""Under ``CI=true`` a skipped test is a failed one (a pytest plugin, loaded by conftest.py).

On CI everything a test needs is there: .ci/run installs the Debian packages and the
extras, and ../shared holds the real captures. A test that skips there for want of one of
them would hide that it never ran, so this turns every skip, at collection
(``importorskip`` at module level) or in a test, into a failure naming the skip's reason.
Elsewhere skips stay skips.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def strict() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _fail(report: pytest.CollectReport | pytest.TestReport) -> None:
    longrepr: Any = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true, which must run every test: {reason} "
                       "(.ci/run installs what tests need; ../shared must be beside the "
                       "repository)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if strict() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if strict() and report.skipped:
        _fail(report)
