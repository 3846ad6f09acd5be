"""Slow and rejected requests: the tables an operator reads when the API server is slow.

- slow: per (request URI pattern, client): count, mean and p99 latency;
- rejected: requests answered 429 (API Priority and Fairness, or max-inflight) per client,
  user, verb and resource, with the APF queue wait where the audit annotation has it;
- controllers: kube-controller-manager's requests per controller (its service account),
  leases (leader election) and discovery left out;
- unbounded lists: cluster-wide LISTs with neither ``limit`` nor ``resourceVersion``, each a
  read of every object of a resource from etcd.

Every table holds at most ``max_keys`` keys; past that, new keys count under ``(other)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lunettes.apiserver.clients import NO_AGENT, client_of, controller_of, uri_pattern
from lunettes.apiserver.scan import RequestFacts
from lunettes.apiserver.series import OTHER, LatencyHistogram

CONTROLLER_MANAGER = "kube-controller-manager"
_SYSTEM_ACCOUNT = "system:serviceaccount:kube-system:"
_DISCOVERY = ("/api", "/apis", "/version", "/openapi", "/.well-known")


def _from_controller_manager(client: str, user: str) -> bool:
    """kube-controller-manager by its userAgent; when the log has no userAgent, by its user
    (``system:kube-controller-manager``, or a kube-system service account: the controllers'
    own credentials with ``--use-service-account-credentials``)."""
    if client != NO_AGENT:
        return client.startswith(CONTROLLER_MANAGER)
    return user == "system:kube-controller-manager" or user.startswith(_SYSTEM_ACCOUNT)


def is_discovery(uri: str) -> bool:
    """True for a request to a discovery path (``/api``, ``/apis``, ``/version``...)."""
    return uri.startswith(_DISCOVERY)


def is_unbounded_list(facts: RequestFacts) -> bool:
    """A LIST of a whole resource across the cluster, with neither limit nor
    resourceVersion: served from etcd, every object at once."""
    if facts.verb != "list" or facts.namespace or not facts.resource:
        return False
    query = facts.uri.partition("?")[2]
    names = {item.partition("=")[0] for item in query.split("&")}
    return "limit" not in names and "resourceVersion" not in names


@dataclass
class RequestTables:
    """Accumulates the tables from :class:`RequestFacts`; bounded by ``max_keys``."""

    max_keys: int = 10_000
    slow: dict[tuple[str, str], LatencyHistogram] = field(default_factory=dict)
    rejected: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    queue_wait: dict[str, LatencyHistogram] = field(default_factory=dict)
    controllers: Counter[str] = field(default_factory=Counter)
    unbounded: Counter[tuple[str, str]] = field(default_factory=Counter)
    overflow: int = 0

    def add(self, facts: RequestFacts, n: int = 1,
            latencies: list[int] | None = None) -> None:
        """Count ``n`` requests like ``facts``; ``latencies`` (microseconds) replaces
        ``facts.latency_us`` when given."""
        client = client_of(facts.user_agent)
        if latencies is None:
            latencies = [] if facts.latency_us is None else [facts.latency_us]
        if latencies:
            histogram = self._histogram(self.slow, (uri_pattern(facts.uri), client))
            histogram.add_all(latencies)
        if facts.code == 429:
            self._count(self.rejected, (client, facts.user, facts.verb, facts.resource), n)
        if facts.apf_wait_us is not None:
            self._histogram(self.queue_wait, client).add_all([facts.apf_wait_us] * n)
        if _from_controller_manager(client, facts.user) and facts.resource != "leases" and (
                facts.resource or not is_discovery(facts.uri)):
            account = facts.user if facts.user.startswith(_SYSTEM_ACCOUNT) else (
                client.partition("/")[2] or facts.user)
            self._count(self.controllers, controller_of(account), n)
        if is_unbounded_list(facts):
            self._count(self.unbounded, (client, facts.resource), n)

    def _histogram(self, table: dict[Any, LatencyHistogram], key: Any) -> LatencyHistogram:
        found = table.get(key)
        if found is None:
            if len(table) >= self.max_keys:
                self.overflow += 1
                key = (OTHER,) * len(key) if isinstance(key, tuple) else OTHER
                found = table.get(key)
            if found is None:
                found = table[key] = LatencyHistogram()
        return found

    def _count(self, table: Counter[Any], key: Any, n: int = 1) -> None:
        if key not in table and len(table) >= self.max_keys:
            self.overflow += n
            key = (OTHER,) * len(key) if isinstance(key, tuple) else OTHER
        table[key] += n
