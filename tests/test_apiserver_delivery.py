"""Delivery regressions: windows and culprits measured against injected regressions (the
simulator's injections are the truth)."""

from __future__ import annotations

from collections import Counter

from lunettes.apiserver.delivery import analyze_delivery, pool_of, registry_of
from lunettes.simulate.delivery_regressions import KINDS, SHAPES, generate

SEEDS = range(12)  # kinds cycle with the seed, shapes every len(KINDS) seeds: all pairs


def test_injected_regressions_windows_and_culprits_precision_recall() -> None:
    tally: Counter[str] = Counter()
    pairs = set()
    for seed in SEEDS:
        records, regressions = generate(seed)
        found = analyze_delivery(records).regressions
        tally["windows"] += len(found)
        for item in found:
            hit = [r for r in regressions
                   if item.window.start < r.end and r.start < item.window.end]
            tally["true_windows"] += bool(hit)
            if item.culprits:
                tally["culprits"] += 1
                named = item.culprits[0].attributes.items()
                tally["right_culprits"] += any(named <= r.shared.items() for r in hit)
        for regression in regressions:
            pairs.add((regression.kind, regression.shape))
            assert regression.condition().items() <= regression.shared.items()
            tally["injected"] += 1
            overlapping = [f for f in found if f.window.start < regression.end
                           and regression.start < f.window.end]
            tally["detected"] += bool(overlapping)
            if overlapping:
                best = max(overlapping, key=lambda f: f.window.peak_z)
                named = best.culprits[0].attributes.items() if best.culprits else {"-": "-"}
                tally["named"] += named <= regression.shared.items()
    window_precision = tally["true_windows"] / tally["windows"]
    window_recall = tally["detected"] / tally["injected"]
    culprit_precision = tally["right_culprits"] / tally["culprits"]
    culprit_recall = tally["named"] / tally["injected"]
    print(f"\n{len(SEEDS)} seeds, {tally['injected']} regressions: window precision "
          f"{window_precision:.2f} recall {window_recall:.2f}; culprit precision "
          f"{culprit_precision:.2f} recall {culprit_recall:.2f}")
    assert pairs == {(k, s) for k in KINDS for s in SHAPES}
    assert window_precision >= 0.8
    assert window_recall >= 0.85
    assert culprit_precision >= 0.8
    assert culprit_recall >= 0.85


def test_a_regression_reports_before_and_after() -> None:
    records, regressions = generate(2)
    found = analyze_delivery(records).regressions
    first = next(f for f in found if f.window.start < regressions[0].end)
    assert first.mean_s > first.expected_mean_s
    assert first.p99_s > first.reference_p99_s


def test_registry_and_pool_names() -> None:
    assert registry_of("r.example.com/ml/trainer:v5") == "r.example.com"
    assert registry_of("localhost/app") == "localhost"
    assert registry_of("nginx:1.27") == "docker.io"
    assert registry_of("library/nginx") == "docker.io"
    assert pool_of("gpu-a-07") == "gpu-a"
    assert pool_of("worker") == "worker"
