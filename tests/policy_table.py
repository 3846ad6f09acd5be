"""What lunettes can tell under each audit policy: the README's table, measured.

One simulated cluster (every scenario, the same seed) is written under each policy of
:mod:`lunettes.simulate.policy` and replayed. The figures compare each replay with the
simulator's own account of what it did (its truth rows under the full RequestResponse
policy: the stages as they happened, the outcome, the injected cause), so they say how
much of the delivery each platform's default audit log still shows.

``python tests/policy_table.py`` prints the table; with ``--write`` it rewrites the README's
(between its markers).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from test_replay_truth import record_stages, replay, simulate

from lunettes.analyzers.diagnosisdefs import DiagnosisConfig
from lunettes.analyzers.stagedefs import StageSet
from lunettes.pipeline import DEFAULT_CONFIG_DIR
from lunettes.simulate import SCENARIOS

PLATFORMS = (
    ("requestresponse", "kubeadm with deploy/audit-policy.yaml"),
    ("gke", "GKE default"),
    ("eks", "EKS (assumed: as GKE)"),
    ("aks", "AKS (aks-engine policy)"),
    ("openshift", "OpenShift Default profile"),
    ("metadata", "Metadata only"),
)
SEED, PODS = 61, 2 * len(SCENARIOS)
BEGIN, END = "<!-- policy-table:begin -->", "<!-- policy-table:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = ("| platform | policy | stages as they happened | outcome | cause (reason) | "
          "SLO verdicts | user-caused Pods counted as platform SLO violations |\n"
          "|---|---|---|---|---|---|---|")


def _truth_stages(row: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, Any]]:
    return {(s["name"], s["instance"]): (s["start"], s["end"]) for s in row["stages"]}


def measure(policy: str, work: Path, full: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of one policy against the full-visibility truth rows ``full``."""
    log, _ = simulate(work, policy=policy, seed=SEED, pods=PODS)
    records, _ = replay(log)
    by_uid = {r.uid: r for r in records}
    by_name = {(r.namespace, r.name): r for r in records}
    stages = stages_right = outcome = cause = verdicts = blamed = 0
    user_caused = _user_caused()
    for row in full:
        record = by_uid.get(row["uid"]) or by_name.get((row["namespace"], row["name"]))
        want = _truth_stages(row)
        stages += len(want)
        if record is None:
            continue
        got = record_stages(record)
        stages_right += sum(got.get(key) == value for key, value in want.items())
        outcome += record.outcome == row["outcome"]
        cause += (record.results["diagnosis"].get("reason") or None) == row["reason"]
        slo = record.results["slo"]["result"]
        verdicts += slo in ("met", "violated", "killed")
        blamed += slo == "violated" and row["scenario"] in user_caused
    n = len(full)
    return {"policy": policy, "pods": n, "stages": stages_right / stages,
            "outcome": outcome / n, "cause": cause / n, "verdicts": verdicts / n,
            "blamed": blamed}


def _user_caused() -> set[str]:
    """The scenarios whose injected cause is the user's (by the codes' owners)."""
    names = tuple(s.name for s in StageSet.load(DEFAULT_CONFIG_DIR / "stages.yaml").stages)
    codes = DiagnosisConfig.load(DEFAULT_CONFIG_DIR / "diagnosis.yaml", names).codes
    return {name for name, s in SCENARIOS.items()
            if s.reason and codes[s.reason].owner == "user"}


def table(work: Path) -> tuple[str, list[dict[str, Any]]]:
    """The README table (markdown) and the figures behind it."""
    (work / "full").mkdir()
    _, full = simulate(work / "full", policy="requestresponse", seed=SEED, pods=PODS)
    rows, figures = [HEADER], []
    for policy, platform in PLATFORMS:
        (work / policy).mkdir()
        f = measure(policy, work / policy, full)
        figures.append(f)
        rows.append(f"| {platform} | `{policy}` | {f['stages']:.0%} | {f['outcome']:.0%} | "
                    f"{f['cause']:.0%} | {f['verdicts']:.0%} | {f['blamed']} |")
    return "\n".join(rows), figures


def readme_table() -> str:
    """The table as the README holds it now."""
    text = README.read_text()
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        markdown, _ = table(Path(tmp))
    print(markdown)
    if "--write" in sys.argv:
        text = README.read_text()
        head, rest = text.split(BEGIN, 1)
        README.write_text(f"{head}{BEGIN}\n{markdown}\n{END}{rest.split(END, 1)[1]}")
