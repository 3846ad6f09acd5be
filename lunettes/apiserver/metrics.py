"""The API server load counts (:mod:`.counts`) as Prometheus metrics, read on each scrape.

Needs the ``prometheus`` extra. Metrics (labels bounded by the counts' guards: ``other``
holds what they fold):

- ``lunettes_apiserver_requests_total{client, verb, resource, code, scope}``;
- ``lunettes_apiserver_request_duration_seconds{verb, resource}``: requestReceived to
  stageTimestamp of ResponseComplete, long-running requests (watch, exec, attach,
  portforward, proxy) left out; kube-apiserver's buckets;
- ``lunettes_apiserver_rejected_requests_total{client, verb, resource}``: answered 429
  (API Priority and Fairness or max-inflight; the audit log names no flow schema);
- ``lunettes_apiserver_unbounded_lists_total{client, resource}``: cluster-wide LISTs with
  neither limit nor resourceVersion;
- ``lunettes_apiserver_label_folded_requests_total{label}``: requests counted under
  ``other`` for that label by the guard.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from lunettes.apiserver.counts import LABELS, LATENCY_BUCKETS, RequestCounts

__all__ = ["RequestCollector"]

_LE = [str(b) for b in LATENCY_BUCKETS] + ["+Inf"]


class RequestCollector(Collector):
    """Exposes ``counts`` (copied on each collection: the pipeline's thread adds to them)."""

    def __init__(self, counts: RequestCounts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        requests = CounterMetricFamily(
            "lunettes_apiserver_requests", "API requests of the audit log (ResponseComplete),"
            " by client (userAgent: binary/controller), verb, resource, code and scope.",
            labels=list(LABELS))
        for labels, n in dict(counts.requests).items():
            requests.add_metric(list(labels), n)
        yield requests
        latency = HistogramMetricFamily(
            "lunettes_apiserver_request_duration_seconds", "API request latency from the "
            "audit log (requestReceivedTimestamp to stageTimestamp), long-running requests "
            "left out.", labels=["verb", "resource"])
        for pair, values in dict(counts.latency).items():
            cumulative = counts.cumulative_buckets(list(values))
            latency.add_metric(list(pair), list(zip(_LE, cumulative, strict=True)),
                               values[-1] / 1e6)
        yield latency
        rejected = CounterMetricFamily(
            "lunettes_apiserver_rejected_requests", "API requests answered 429 (too many "
            "requests), by client, verb and resource.", labels=["client", "verb", "resource"])
        for triple, n in dict(counts.rejected).items():
            rejected.add_metric(list(triple), n)
        yield rejected
        unbounded = CounterMetricFamily(
            "lunettes_apiserver_unbounded_lists", "Cluster-wide LIST requests with neither "
            "limit nor resourceVersion, by client and resource.",
            labels=["client", "resource"])
        for pair, n in dict(counts.unbounded).items():
            unbounded.add_metric(list(pair), n)
        yield unbounded
        folded = CounterMetricFamily(
            "lunettes_apiserver_label_folded_requests", "Requests counted under 'other' for "
            "a label by the cardinality guard.", labels=["label"])
        for label in LABELS:
            folded.add_metric([label], counts.folded.get(label, 0))
        yield folded
