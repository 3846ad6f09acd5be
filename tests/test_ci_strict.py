"""Under CI=true a test that skips for want of something fails the run (tests/ci_strict.py);
elsewhere it skips. Run on a throwaway test file in a child pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SKIPPING = '''
import pytest
from realdata import real

def test_a_capture_that_is_not_there():
    real("no-such-capture.jsonl")

@pytest.mark.skipif(True, reason="a tool that is not installed")
def test_a_missing_tool():
    pass

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_a_known_bug():
    raise AssertionError

def test_one_that_runs():
    pass
'''

MODULE_SKIP = '''
import pytest
pytest.importorskip("no_such_module_for_lunettes", reason="an extra that is not installed")

def test_never_collected():
    pass
'''


@pytest.mark.parametrize("ci", ["true", ""])
def test_skips_fail_only_under_ci(tmp_path: Path, ci: str) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    (tmp_path / "conftest.py").write_text((TESTS / "conftest.py").read_text())
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:randomly",
                           "-p", "no:cacheprovider", "--continue-on-collection-errors",
                           str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout
    if ci:
        assert done.returncode == 1, out
        assert "FAILED test_skipping.py::test_a_capture_that_is_not_there" in out
        assert "no-such-capture.jsonl" in out and "skipped under CI=true" in out
        assert "ERROR test_skipping.py::test_a_missing_tool" in out  # skipif: at setup
        assert "ERROR test_module_skip.py" in out and "an extra that is not installed" in out
    else:
        assert done.returncode == 0, out
        assert "3 skipped" in out, out
    assert "XFAIL test_skipping.py::test_a_known_bug" in out  # xfail stays what it is
    assert "PASSED test_skipping.py::test_one_that_runs" in out
