"""Background traffic of other clients: leases, watches, lists, gets, node status..."""

from __future__ import annotations

import random
from collections.abc import Callable

from lunettes.simulate.audit import AuditLog, failure_status, object_ref
from lunettes.simulate.clock import SECOND
from lunettes.simulate.cluster import Cluster, Identity

__all__ = ["Background"]

_NAMESPACES = ("kube-system", "default", "shop", "payments", "monitoring", "platform")
_CONFIGMAPS = ("kube-root-ca.crt", "coredns", "kube-proxy", "app-config", "feature-flags",
               "cluster-info", "extension-apiserver-authentication")
_WATCHED = (("configmaps", "", "v1"), ("secrets", "", "v1"), ("pods", "", "v1"),
            ("nodes", "", "v1"), ("endpointslices", "discovery.k8s.io", "v1"),
            ("services", "", "v1"), ("leases", "coordination.k8s.io", "v1"),
            ("events", "events.k8s.io", "v1"))


def _base(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


class Background:
    """A Poisson stream of ``rate`` requests per second from a weighted client mix."""

    def __init__(self, cluster: Cluster, audit: AuditLog, rng: random.Random, rate: float,
                 start_us: int) -> None:
        self.cluster = cluster
        self.audit = audit
        self.rng = rng
        self.rate = rate
        self.next_us = start_us
        self.count = 0
        kinds: list[tuple[float, Callable[[int], None]]] = [
            (24, self._node_lease), (10, self._leader_lease), (12, self._get_configmap),
            (6, self._get_secret), (5, self._list_pods), (9, self._watch),
            (8, self._node_status), (8, self._endpointslices), (6, self._get_misc),
            (5, self._token), (4, self._sar), (3, self._get_pod),
        ]
        total = sum(w for w, _ in kinds)
        acc = 0.0
        self._cum: list[float] = []
        self._fns: list[Callable[[int], None]] = []
        for w, fn in kinds:
            acc += w / total
            self._cum.append(acc)
            self._fns.append(fn)
        c = cluster
        self.operators = [c.controllers[n] for n in ("endpointslice-controller",
                                                      "deployment-controller",
                                                      "replicaset-controller")]
        self.operators += [c.ci, c.gate_controller]

    def advance(self, until_us: int) -> None:
        """Write background requests received before ``until_us``."""
        if self.rate <= 0:
            return
        rng = self.rng
        rnd = rng.random
        cum, fns = self._cum, self._fns
        while self.next_us < until_us:
            t = self.next_us
            x = rnd()
            for i, edge in enumerate(cum):
                if x <= edge:
                    fns[i](t)
                    break
            else:
                fns[-1](t)
            self.count += 1
            self.next_us = t + max(1, int(rng.expovariate(self.rate) * SECOND))

    # -- request kinds ----------------------------------------------------------------
    def _lat(self) -> int:
        return self.rng.randint(400, 6000)

    def _node(self) -> Identity:
        return self.rng.choice(self.cluster.nodes).identity

    def _node_lease(self, t: int) -> None:
        ident = self._node()
        name = ident.user["username"].rsplit(":", 1)[1]
        ref = object_ref("leases", "kube-node-lease", name, group="coordination.k8s.io")
        self.audit.emit(t, self._lat(), "update",
                        f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
                        "?timeout=10s", ident, ref)

    def _leader_lease(self, t: int) -> None:
        c = self.cluster
        ident, name = self.rng.choice(((c.scheduler, "kube-scheduler"),
                                       (c.controllers["node-controller"],
                                        "kube-controller-manager")))
        verb = "update" if self.rng.random() < 0.5 else "get"
        ref = object_ref("leases", "kube-system", name, group="coordination.k8s.io")
        self.audit.emit(t, self._lat(), verb,
                        f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}"
                        "?timeout=5s", ident, ref)

    def _get_configmap(self, t: int) -> None:
        ns = self.rng.choice(_NAMESPACES)
        name = self.rng.choice(_CONFIGMAPS)
        ident = self.rng.choice([*self.operators, self._node()])
        code = 200 if name != "feature-flags" or ns == "default" else 404
        ref = object_ref("configmaps", ns, name)
        uri = f"/api/v1/namespaces/{ns}/configmaps/{name}"
        if code == 404:
            self.audit.emit(t, self._lat(), "get", uri, ident, ref, failure=failure_status(
                404, "NotFound", f'configmaps "{name}" not found',
                {"name": name, "kind": "configmaps"}))
        else:
            self.audit.emit(t, self._lat(), "get", uri, ident, ref)

    def _get_secret(self, t: int) -> None:
        ns = self.rng.choice(_NAMESPACES)
        name = f"{self.rng.choice(('db', 'tls', 'registry', 'api'))}-credentials"
        self.audit.emit(t, self._lat(), "get", f"/api/v1/namespaces/{ns}/secrets/{name}",
                        self._node(), object_ref("secrets", ns, name))

    def _list_pods(self, t: int) -> None:
        ns = self.rng.choice(_NAMESPACES)
        ident = self.rng.choice(self.operators)
        uri = f"/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb&limit=500"
        self.audit.emit(t, self.rng.randint(2000, 40000), "list", uri, ident,
                        object_ref("pods", ns),
                        response={"kind": "PodList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": self.cluster.rv()},
                                  "items": []})

    def _watch(self, t: int) -> None:
        rng = self.rng
        resource, group, version = rng.choice(_WATCHED)
        ident = rng.choice([*self.operators, self._node(), self.cluster.scheduler])
        timeout = rng.randint(300, 600)
        uri = (f"{_base(group, version)}/{resource}?allowWatchBookmarks=true&resourceVersion="
               f"{self.cluster.rv()}&timeout={timeout // 60}m{timeout % 60}s&timeoutSeconds="
               f"{timeout}&watch=true")
        ref = object_ref(resource, group=group, version=version)
        audit_id = self.cluster.uuid()
        server = rng.randrange(self.cluster.apiservers)
        self.audit.emit(t, rng.randint(300, 2000), "watch", uri, ident, ref,
                        stage="ResponseStarted", audit_id=audit_id, server=server)
        self.audit.emit(t, timeout * SECOND + rng.randint(100, 5000), "watch", uri, ident,
                        ref, audit_id=audit_id, server=server)

    def _node_status(self, t: int) -> None:
        ident = self._node()
        name = ident.user["username"].rsplit(":", 1)[1]
        self.audit.emit(t, self._lat(), "patch", f"/api/v1/nodes/{name}/status?timeout=10s",
                        ident, object_ref("nodes", "", name, subresource="status"))

    def _endpointslices(self, t: int) -> None:
        ns = self.rng.choice(_NAMESPACES)
        name = f"{self.rng.choice(('web', 'api', 'checkout', 'search'))}-{self.cluster.name(5)}"
        self.audit.emit(t, self._lat(), "update",
                        f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{name}",
                        self.cluster.controllers["endpointslice-controller"],
                        object_ref("endpointslices", ns, name, group="discovery.k8s.io"))

    def _get_misc(self, t: int) -> None:
        rng = self.rng
        if rng.random() < 0.5:
            node = rng.choice(self.cluster.nodes).name
            self.audit.emit(t, self._lat(), "get", f"/api/v1/nodes/{node}?timeout=10s",
                            self._node(), object_ref("nodes", "", node))
        else:
            ns = rng.choice(_NAMESPACES)
            self.audit.emit(t, self._lat(), "get", f"/api/v1/namespaces/{ns}",
                            rng.choice(self.operators), object_ref("namespaces", "", ns))

    def _token(self, t: int) -> None:
        ident = self._node()
        ns = self.rng.choice(_NAMESPACES)
        self.audit.emit(t, self._lat(), "create",
                        f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", ident,
                        object_ref("serviceaccounts", ns, "default", subresource="token"), 201)

    def _sar(self, t: int) -> None:
        ident = self.rng.choice(self.operators)
        self.audit.emit(t, self._lat(), "create",
                        "/apis/authorization.k8s.io/v1/subjectaccessreviews", ident,
                        object_ref("subjectaccessreviews", group="authorization.k8s.io"), 201)

    def _get_pod(self, t: int) -> None:
        ns = self.rng.choice(_NAMESPACES)
        name = f"{self.rng.choice(('coredns', 'metrics-server', 'ingress'))}-{self.cluster.name(5)}"
        ident = self.rng.choice(self.operators)
        self.audit.emit(t, self._lat(), "get", f"/api/v1/namespaces/{ns}/pods/{name}", ident,
                        object_ref("pods", ns, name), failure=failure_status(
                            404, "NotFound", f'pods "{name}" not found',
                            {"name": name, "kind": "pods"}))
