"""Simulated API server load with injected misbehaving clients; the injections are the truth.

A cluster's steady clients (kubelets, kube-controller-manager's controllers, the scheduler,
people with kubectl, an operator, a CI runner, Prometheus) send requests at Poisson rates
that follow a daily-like cycle of ``period`` intervals. Each :class:`Injection` adds one
misbehaving client's requests with a shape (``step``: a constant extra rate, ``ramp``: a rate
growing to its peak, ``burst``: a short, high rate) and a kind:

- ``new_client``: a client never seen before LISTs every Pod of the cluster;
- ``list_storm``: kube-controller-manager's job-controller LISTs every Pod of the cluster;
- ``namespace_hammer``: the CI runner creates ConfigMaps in one namespace;
- ``error_storm``: the operator GETs Secrets it may not read (403);
- ``throttled`` (only when asked for, never drawn by :func:`random_injections`): a batch
  operator LISTs every Pod of the cluster and is answered 429 (too many requests).

Each request the generator writes is also kept as a :class:`Request` with the client name
it simulated (binary and controller) and the injection it belongs to (-1: steady traffic),
so tests measure what an analysis names against what was done. Same seed, same bytes.
"""

from __future__ import annotations

import math
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import orjson

from lunettes.model.times import format_time

SHAPES = ("step", "ramp", "burst")
KINDS = ("new_client", "list_storm", "namespace_hammer", "error_storm")
_VERSION = "v1.30.2 (linux/amd64) kubernetes/7c48c2b"
_START = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())


class Request(NamedTuple):
    """One simulated request: what the generator did (``injection``: index, -1 steady)."""

    time_us: int
    client: str
    user_agent: str
    user: str
    verb: str
    resource: str
    namespace: str
    name: str
    code: int
    latency_us: int
    injection: int


@dataclass(frozen=True)
class _Client:
    client: str  # binary[/controller], what the analysis should name
    user_agent: str
    user: str
    rate: float  # requests per interval at the cycle's mean
    templates: tuple[tuple[str, str, str, str, int, float], ...]  # verb, resource, ns,
    # name, code, mean latency in seconds


def _kcm(controller: str, rate: float, *templates: tuple[str, str, str, str, int, float]
         ) -> _Client:
    account = f"system:serviceaccount:kube-system:{controller}"
    return _Client(f"kube-controller-manager/{controller}",
                   f"kube-controller-manager/{_VERSION}/{account}", account, rate, templates)


def _steady_clients(nodes: int) -> list[_Client]:
    clients = [
        _Client("kubelet", f"kubelet/{_VERSION}", f"system:node:node-{n}", 8.0, (
            ("get", "pods", "apps", "web-{i}", 200, 0.004),
            ("patch", "pods/status", "apps", "web-{i}", 200, 0.012),
            ("update", "leases", "kube-node-lease", f"node-{n}", 200, 0.006),
            ("get", "nodes", "", f"node-{n}", 200, 0.003),
            ("patch", "nodes/status", "", f"node-{n}", 200, 0.010)))
        for n in range(nodes)]
    clients += [
        _kcm("replicaset-controller", 6.0, ("get", "replicasets", "apps", "web-{i}", 200, 0.004),
             ("update", "replicasets/status", "apps", "web-{i}", 200, 0.010),
             ("create", "pods", "apps", "", 201, 0.020)),
        _kcm("job-controller", 5.0, ("get", "jobs", "batch", "job-{i}", 200, 0.004),
             ("update", "jobs/status", "batch", "job-{i}", 200, 0.010),
             ("list", "pods", "batch", "", 200, 0.030)),
        _kcm("endpointslice-controller", 6.0, ("get", "endpointslices", "apps", "web-{i}", 200,
                                               0.004),
             ("update", "endpointslices", "apps", "web-{i}", 200, 0.012)),
        _kcm("node-lifecycle-controller", 4.0, ("get", "nodes", "", "node-{i}", 200, 0.003),
             ("list", "pods", "", "", 200, 0.080)),
        _Client("kube-controller-manager/leader-election",
                f"kube-controller-manager/{_VERSION}/leader-election",
                "system:kube-controller-manager", 4.0,
                (("update", "leases", "kube-system", "kube-controller-manager", 200, 0.006),)),
        _Client("kube-scheduler/scheduler", f"kube-scheduler/{_VERSION}/scheduler",
                "system:kube-scheduler", 5.0,
                (("create", "pods/binding", "apps", "web-{i}", 201, 0.015),
                 ("update", "leases", "kube-system", "kube-scheduler", 200, 0.006))),
        _Client("kubectl", "kubectl/v1.30.0 (darwin/arm64) kubernetes/7c48c2b", "alice", 2.0,
                (("get", "pods", "team-a", "api-{i}", 200, 0.005),
                 ("list", "deployments", "team-a", "", 200, 0.020))),
        _Client("cert-manager-controller",
                "cert-manager-controller/v1.14.4 (linux/amd64) cert-manager/f8d4a6a",
                "system:serviceaccount:cert-manager:cert-manager", 4.0,
                (("get", "certificates", "team-a", "tls-{i}", 200, 0.004),
                 ("get", "secrets", "team-a", "tls-{i}", 200, 0.004),
                 ("update", "certificates/status", "team-a", "tls-{i}", 200, 0.010))),
        _Client("ci-runner", "ci-runner/2.3.1", "system:serviceaccount:ci:ci-bot", 3.0,
                (("create", "configmaps", "ci-a", "", 201, 0.015),
                 ("get", "configmaps", "ci-b", "run-{i}", 200, 0.004),
                 ("create", "configmaps", "ci-b", "", 201, 0.015))),
        _Client("Prometheus", "Prometheus/2.53.0",
                "system:serviceaccount:monitoring:prometheus", 3.0,
                (("list", "endpointslices", "", "", 200, 0.040),
                 ("list", "pods", "monitoring", "", 200, 0.020))),
    ]
    return clients


def _misbehaving(kind: str) -> _Client:
    if kind == "new_client":
        return _Client("rogue-exporter", "rogue-exporter/0.1.0 (linux/amd64) kubernetes/deadbee",
                       "system:serviceaccount:monitoring:rogue-exporter", 0.0,
                       (("list", "pods", "", "", 200, 0.250),))
    if kind == "list_storm":
        return _kcm("job-controller", 0.0, ("list", "pods", "", "", 200, 0.300))
    if kind == "namespace_hammer":
        return _Client("ci-runner", "ci-runner/2.3.1", "system:serviceaccount:ci:ci-bot", 0.0,
                       (("create", "configmaps", "ci-b", "", 201, 0.020),))
    if kind == "error_storm":
        return _Client("cert-manager-controller",
                       "cert-manager-controller/v1.14.4 (linux/amd64) cert-manager/f8d4a6a",
                       "system:serviceaccount:cert-manager:cert-manager", 0.0,
                       (("get", "secrets", "kube-system", "ca-{i}", 403, 0.002),))
    if kind == "throttled":
        return _Client("batch-operator", "batch-operator/1.2.0 (linux/amd64) kubernetes/0a1b2c3",
                       "system:serviceaccount:batch:batch-operator", 0.0,
                       (("list", "pods", "", "", 429, 0.001),))
    raise ValueError(f"unknown injection kind {kind!r} (one of {', '.join(KINDS)}, "
                     f"throttled)")


@dataclass(frozen=True)
class Injection:
    """One misbehaving client: ``kind`` from :data:`KINDS`, ``shape`` from :data:`SHAPES`,
    from interval ``start`` to ``end`` (exclusive), ``peak`` extra requests per interval."""

    kind: str
    shape: str
    start: int
    end: int
    peak: float

    def rate(self, interval: int) -> float:
        if not self.start <= interval < self.end:
            return 0.0
        if self.shape == "ramp":
            return self.peak * (interval - self.start + 1) / (self.end - self.start)
        return self.peak

    def truth(self) -> dict[str, str]:
        """The attributes every request of this injection has (client, user, verb,
        resource, namespace ('-' for cluster scope), code)."""
        client = _misbehaving(self.kind)
        verb, resource, namespace, _, code, _ = client.templates[0]
        return {"user_agent": client.client, "user": client.user, "verb": verb,
                "resource": resource, "namespace": namespace or "-", "code": str(code)}


@dataclass
class Traffic:
    """Generated traffic: audit lines, the requests behind them, and the injections."""

    interval_s: int
    start_s: int
    injections: list[Injection]
    requests: list[Request] = field(default_factory=list)

    def lines(self) -> Iterator[bytes]:
        """The audit log, kube-apiserver's field order, one Event per line, time order."""
        for request in self.requests:
            yield _line(request)


def generate(seed: int, intervals: int = 360, interval_s: int = 60, period: int = 60,
             nodes: int = 4, injections: list[Injection] | None = None) -> Traffic:
    """Steady traffic for ``intervals`` intervals plus ``injections`` (default: two drawn
    from the seed, at least a period apart, away from both ends)."""
    rng = np.random.default_rng(seed)
    clients = _steady_clients(nodes)
    mean_total = sum(c.rate for c in clients)
    if injections is None:
        injections = random_injections(rng, intervals, period, mean_total, seed)
    traffic = Traffic(interval_s, _START, injections)
    sources = [(c, -1) for c in clients] + [
        (_misbehaving(inj.kind), k) for k, inj in enumerate(injections)]
    interval_us = interval_s * 1_000_000
    for i in range(intervals):
        cycle = 1.0 + 0.35 * math.sin(2 * math.pi * i / period)
        batch: list[Request] = []
        for client, k in sources:
            rate = client.rate * cycle if k < 0 else injections[k].rate(i)
            for _ in range(int(rng.poisson(rate))):
                verb, resource, ns, name, code, latency = client.templates[
                    int(rng.integers(len(client.templates)))]
                at = (_START + i * interval_s) * 1_000_000 + int(rng.integers(interval_us))
                batch.append(Request(
                    at, client.client, client.user_agent, client.user, verb, resource, ns,
                    name.format(i=int(rng.integers(50))), code,
                    int(rng.exponential(latency) * 1e6), k))
        batch.sort()
        traffic.requests.extend(batch)
    return traffic


def random_injections(rng: np.random.Generator, intervals: int, period: int,
                      mean_total: float, seed: int, count: int = 2) -> list[Injection]:
    """``count`` injections, kind and shape cycling with the seed, one per stretch of the
    series (kept a period apart and away from both ends)."""
    found: list[Injection] = []
    stretch = (intervals - 2 * 10) // count
    for n in range(count):
        kind = KINDS[(seed + n) % len(KINDS)]
        shape = SHAPES[(seed // len(KINDS) + n) % len(SHAPES)]
        length = {"step": int(rng.integers(6, 16)), "ramp": int(rng.integers(10, 20)),
                  "burst": int(rng.integers(1, 4))}[shape]
        factor = {"step": 1.0, "ramp": 1.5, "burst": 2.5}[shape]
        lo = 10 + n * stretch
        start = int(rng.integers(lo, lo + stretch - length - period // 4))
        found.append(Injection(kind, shape, start, start + length,
                               float(rng.uniform(0.7, 1.3)) * factor * mean_total))
    return found


def _line(request: Request) -> bytes:
    """One audit.k8s.io/v1 Event at Metadata level, as kube-apiserver writes it."""
    resource, _, sub = request.resource.partition("/")
    group = {"replicasets": "apps", "jobs": "batch", "endpointslices": "discovery.k8s.io",
             "leases": "coordination.k8s.io", "certificates": "cert-manager.io"}.get(
        resource, "")
    version = "v1"
    base = f"/apis/{group}/{version}" if group else "/api/v1"
    path = base + (f"/namespaces/{request.namespace}" if request.namespace else "") + \
        f"/{resource}" + (f"/{request.name}" if request.name else "") + (f"/{sub}" if sub
                                                                           else "")
    if request.verb == "list":
        path += "?limit=500&resourceVersion=0" if request.namespace else ""
    elif request.verb in ("patch", "update", "create"):
        path += "?fieldManager=" + request.client.split("/")[0]
    ref: dict[str, str] = {"resource": resource}
    if request.namespace:
        ref["namespace"] = request.namespace
    if request.name:
        ref["name"] = request.name
    if group:
        ref["apiGroup"] = group
    ref["apiVersion"] = version
    if sub:
        ref["subresource"] = sub
    status: dict[str, object] = {"metadata": {}, "code": request.code}
    if request.code == 403:
        status = {"metadata": {}, "status": "Failure", "reason": "Forbidden",
                  "code": 403}
    elif request.code == 429:
        status = {"metadata": {}, "status": "Failure",
                  "message": "Too many requests, please try again later.",
                  "reason": "TooManyRequests", "code": 429}
    identity = uuid.UUID(int=request.time_us << 32 | zlib.crc32(request.name.encode()))
    event = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": str(identity), "stage": "ResponseComplete", "requestURI": path,
        "verb": request.verb,
        "user": {"username": request.user, "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.7"],
        "userAgent": request.user_agent,
        "objectRef": ref, "responseStatus": status,
        "requestReceivedTimestamp": format_time(request.time_us),
        "stageTimestamp": format_time(request.time_us + request.latency_us),
        "annotations": {"authorization.k8s.io/decision": "forbid" if request.code == 403
                        else "allow", "authorization.k8s.io/reason": ""},
    }
    return orjson.dumps(event).replace(b"&", b"\\u0026") + b"\n"


