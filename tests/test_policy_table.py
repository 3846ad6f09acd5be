"""The README's table of what lunettes can tell under each platform's audit policy is the
one the simulator measures (see tests/policy_table.py)."""

from __future__ import annotations

from pathlib import Path

from policy_table import readme_table, table


def test_readme_table_is_the_measured_one(tmp_path: Path) -> None:
    markdown, figures = table(tmp_path)
    print("\n" + markdown)
    by_policy = {f["policy"]: f for f in figures}
    full = by_policy["requestresponse"]
    assert (full["stages"], full["outcome"], full["cause"]) == (1.0, 1.0, 1.0)
    for policy in ("requestresponse", "aks", "openshift", "metadata"):
        assert by_policy[policy]["blamed"] == 0, policy
    assert readme_table() == markdown, "run: python tests/policy_table.py --write"
