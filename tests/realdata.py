"""Paths of the real audit captures in ../shared/data/real (see its PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def real(name: str) -> str:
    """The path of one capture; skips the test when shared/ is not beside the repository
    (under CI=true that skip fails the run: tests/ci_strict.py)."""
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real capture {path} not present")
    return str(path)
