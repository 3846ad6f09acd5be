"""Anomalous windows and their culprits, measured against injected misbehaving clients
(the simulator's injections are the truth)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from lunettes.apiserver.anomaly import detect_period
from lunettes.apiserver.load import Anomaly, find_anomalies
from lunettes.apiserver.scan import RequestFacts, scan
from lunettes.apiserver.series import SeriesBuilder
from lunettes.simulate.apiserver_traffic import KINDS, SHAPES, Request, Traffic, generate

SEEDS = range(12)  # kinds cycle with the seed, shapes every len(KINDS) seeds: all pairs
PURE = 0.8


def _analyse(traffic: Traffic, period: int | None = None) -> list[Anomaly]:
    builder = SeriesBuilder(interval_s=traffic.interval_s)
    for line in traffic.lines():
        facts = scan(line)
        assert isinstance(facts, RequestFacts)
        builder.add(facts)
    return find_anomalies(builder.series(), period=period)[1]


def _matches(request: Request, attributes: dict[str, str]) -> bool:
    values = {"user_agent": request.client, "user": request.user, "verb": request.verb,
              "resource": request.resource, "namespace": request.namespace or "-",
              "code": str(request.code)}
    return all(values[k] == v for k, v in attributes.items())


def test_injected_clients_windows_and_culprits_precision_recall() -> None:
    tally: Counter[str] = Counter()
    seen_pairs = set()
    for seed in SEEDS:
        traffic = generate(seed)
        anomalies = _analyse(traffic)
        by_interval: dict[int, list[Request]] = defaultdict(list)
        for request in traffic.requests:
            by_interval[(request.time_us // 1_000_000 - traffic.start_s) // 60].append(request)
        tally["windows"] += len(anomalies)
        for anomaly in anomalies:
            w = anomaly.window
            hit = [k for k, inj in enumerate(traffic.injections)
                   if w.start < inj.end and inj.start < w.end]
            tally["true_windows"] += bool(hit)
            if not anomaly.culprits:
                continue
            tally["culprits"] += 1
            culprit = anomaly.culprits[0].attributes
            in_window = [r for i in w.indices() for r in by_interval[i]
                         if _matches(r, culprit)]
            injected = sum(r.injection in hit for r in in_window)
            right = bool(hit) and any(
                culprit.items() <= traffic.injections[k].truth().items() for k in hit) and (
                injected >= PURE * len(in_window))
            tally["right_culprits"] += right
        for inj in traffic.injections:
            seen_pairs.add((inj.kind, inj.shape))
            tally["injections"] += 1
            overlapping = [a for a in anomalies
                           if a.window.start < inj.end and inj.start < a.window.end]
            tally["found"] += bool(overlapping)
            if overlapping:
                best = max(overlapping, key=lambda a: a.window.peak_z)
                culprit = best.culprits[0].attributes if best.culprits else {"-": "-"}
                tally["named"] += culprit.items() <= inj.truth().items()
    window_precision = tally["true_windows"] / tally["windows"]
    window_recall = tally["found"] / tally["injections"]
    culprit_precision = tally["right_culprits"] / tally["culprits"]
    culprit_recall = tally["named"] / tally["injections"]
    print(f"\n{len(SEEDS)} seeds, {tally['injections']} injections: window precision "
          f"{window_precision:.2f} recall {window_recall:.2f}; culprit precision "
          f"{culprit_precision:.2f} recall {culprit_recall:.2f}")
    assert seen_pairs == {(k, s) for k in KINDS for s in SHAPES}
    assert window_precision >= 0.8
    assert window_recall >= 0.9
    assert culprit_precision >= 0.8
    assert culprit_recall >= 0.9


@pytest.mark.parametrize("period", [None, 60])
def test_steady_traffic_has_few_false_windows(period: int | None) -> None:
    anomalies = _analyse(generate(3, injections=[]), period)
    assert len(anomalies) <= 1, [a.window for a in anomalies]


@pytest.mark.parametrize("cycle", [[10.0, 20.0], [10.0, 20.0, 12.0], [5.0, 9.0, 14.0, 9.0, 5.0]])
def test_short_cycles_are_found(cycle: list[float]) -> None:
    """Periods under 4 intervals (the bundled sample's series has one of 2) are detected,
    not an empty slice's error."""
    assert detect_period(np.tile(cycle, 60 // len(cycle))) == len(cycle)
