"""Per-interval counts stay exact for the heavy values and bounded whatever the number of
distinct clients; client names and URI patterns follow client-go's userAgent format."""

from __future__ import annotations

from collections import Counter

import pytest

from lunettes.apiserver.clients import client_of, uri_pattern
from lunettes.apiserver.drilldown import explain
from lunettes.apiserver.scan import RequestFacts
from lunettes.apiserver.series import OTHER, SeriesBuilder

T0 = 1_770_000_000 * 1_000_000


def _facts(second: float, agent: str, verb: str = "get", code: int = 200) -> RequestFacts:
    return RequestFacts(T0 + int(second * 1e6), verb, "/api/v1/pods", "u", agent, "pods", "",
                        "ns", "", code, 1000, None)


def test_many_distinct_agents_stay_bounded_and_heavy_ones_exact() -> None:
    builder = SeriesBuilder(interval_s=60, top_k=3, max_open_keys=1000, max_closed_keys=50)
    sent: Counter[str] = Counter()
    for i in range(30_000):
        second = i * 0.01  # 300 s: five intervals
        agent = f"heavy-{i % 3}/1.0" if i % 2 else f"noise-{i}/1.0"
        builder.add(_facts(second, agent))
        sent[client_of(agent)] += 1
    series = builder.series()
    assert series.total.sum() == 30_000
    assert len(series.total) == 5
    for interval in series.joint:
        assert len(interval) <= 50
    for interval in series.marginals:
        assert all(len(values) <= 4 for values in interval)  # top 3 + (other)
    tops = dict(series.top("user_agent", 4))
    for name in ("heavy-0", "heavy-1", "heavy-2"):
        assert tops[name] == sent[name]
    assert tops[OTHER] == sum(n for name, n in sent.items() if name.startswith("noise"))
    assert series.folded["user_agent"] == tops[OTHER]
    assert series.overflow > 0  # 15,000 noise agents could not all be open keys


def test_a_late_record_counts_in_its_own_interval() -> None:
    builder = SeriesBuilder(interval_s=60)
    builder.add(_facts(0, "a/1"))
    builder.add(_facts(200, "a/1"))
    builder.add(_facts(10, "late/1"))  # interval 0 is closed by now
    series = builder.series()
    assert list(series.total) == [2, 0, 0, 1]
    assert series.slice({"verb": "get"}).tolist() == [2, 0, 0, 1]


@pytest.mark.parametrize(("agent", "client"), [
    ("kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/abc/"
     "system:serviceaccount:kube-system:replicaset-controller",
     "kube-controller-manager/replicaset-controller"),
    ("kube-scheduler/v1.25.8+27e744f (linux/amd64) kubernetes/df8a1b9/scheduler",
     "kube-scheduler/scheduler"),
    ("kubectl/v1.30.0 (darwin/arm64) kubernetes/7c48c2b", "kubectl"),
    ("cluster-version-operator/v0.0.0 (linux/amd64) kubernetes/$Format",
     "cluster-version-operator"),
    ("strimzi-cluster-operator/0.35.1", "strimzi-cluster-operator"),
    ("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla"),
    ("", "(none)"),
])
def test_client_names(agent: str, client: str) -> None:
    assert client_of(agent) == client


def test_uri_patterns() -> None:
    assert uri_pattern("/api/v1/namespaces/ns1/pods/web-0/status?timeout=5s") == \
        "/api/v1/namespaces/{namespace}/pods/{name}/status?timeout"
    assert uri_pattern("/apis/apps/v1/namespaces/a/deployments?limit=500&labelSelector=x") == \
        "/apis/apps/v1/namespaces/{namespace}/deployments?labelSelector&limit"
    assert uri_pattern("/api/v1/namespaces/kube-system") == "/api/v1/namespaces/{name}"
    assert uri_pattern("/api/v1/nodes/node-1") == "/api/v1/nodes/{name}"
    assert uri_pattern("/healthz") == "/healthz"


def test_drilldown_prefers_the_smallest_pure_combination() -> None:
    dims = ("client", "verb")
    # client x sends 100 gets as usual and 300 extra lists; y is steady.
    leaves = {("x", "get"): (100.0, 100.0), ("x", "list"): (310.0, 10.0),
              ("y", "get"): (200.0, 200.0), ("y", "list"): (50.0, 50.0)}
    culprit = explain(leaves, dims)[0]
    assert culprit.attributes == {"client": "x", "verb": "list"}
    assert culprit.share == pytest.approx(1.0)
    assert culprit.difference == pytest.approx(300.0)
    # when x sends nothing else, x alone is the smaller explanation
    leaves[("x", "get")] = (0.0, 0.0)
    assert explain(leaves, dims)[0].attributes == {"client": "x"}
    assert explain({("a", "b"): (5.0, 5.0)}, dims) == []


def test_latency_quantiles_within_their_bucket_width() -> None:
    import numpy as np

    from lunettes.apiserver.series import LatencyHistogram

    rng = np.random.default_rng(5)
    latencies = [int(x) for x in rng.lognormal(9, 1.5, 20_000)]
    histogram = LatencyHistogram()
    for value in latencies:
        histogram.add(value)
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(latencies, q, method="inverted_cdf")) / 1e6
        assert histogram.quantile_s(q) == pytest.approx(exact, rel=0.07)
    assert histogram.mean_s == pytest.approx(sum(latencies) / len(latencies) / 1e6)
