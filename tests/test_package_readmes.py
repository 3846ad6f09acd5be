"""Every package of lunettes has a short README with a Mermaid picture of its part of the
path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lunettes"
PACKAGES = sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()
                  or any(p.glob("*.py")))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_readme_has_a_mermaid_picture(package: Path) -> None:
    readme = package / "README.md"
    assert readme.is_file(), f"{readme.relative_to(PACKAGE.parent)}: missing"
    text = readme.read_text()
    block = re.search(r"```mermaid\n(flowchart|graph) (LR|TD|TB|RL)\n(.+?)```", text, re.S)
    assert block is not None, f"{readme}: no Mermaid flowchart"
    assert "-->" in block[3]
