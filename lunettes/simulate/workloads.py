"""Workloads: what creates a Pod (Deployment, Job, StatefulSet, a user) and its spec."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lunettes.simulate.cluster import Cluster, Identity

__all__ = ["IMAGES", "WORKLOADS", "ContainerPlan", "PodPlan", "make_plan"]

WORKLOADS = ("deployment", "job", "statefulset", "pod")

# image → size in bytes (as the kubelet reports it after a pull)
IMAGES: dict[str, int] = {
    "docker.io/library/nginx:1.27.3": 72_099_410,
    "docker.io/library/redis:7.4.1": 45_016_482,
    "docker.io/library/postgres:16.4": 158_004_567,
    "ghcr.io/acme/checkout-api:v2.14.0": 61_774_109,
    "ghcr.io/acme/search:v0.9.3": 212_530_044,
    "quay.io/prometheus/node-exporter:v1.8.2": 11_650_876,
    "registry.k8s.io/e2e-test-images/agnhost:2.52": 56_234_112,
    "public.ecr.aws/docker/library/python:3.12-slim": 49_981_234,
    "ghcr.io/acme/payments:v5.2.1": 88_412_345,
}
SIDECARS = {"docker.io/envoyproxy/envoy:v1.31.2": 60_553_216}
INIT_IMAGES = {"docker.io/library/busybox:1.36.1": 2_160_406,
               "ghcr.io/acme/db-migrate:v1.3.0": 24_118_900}
JOB_IMAGES = {"public.ecr.aws/docker/library/python:3.12-slim": 49_981_234,
              "docker.io/bitnami/kubectl:1.30.5": 98_117_823}
ALL_IMAGES = {**IMAGES, **SIDECARS, **INIT_IMAGES, **JOB_IMAGES}

APPS = ("web", "api", "checkout", "cart", "search", "frontend", "worker", "cache", "auth",
        "payments", "catalog", "ledger")
NAMESPACES = ("default", "shop", "payments", "search", "platform", "ml")
JOB_NAMESPACES = ("batch", "ml", "default")


@dataclass(slots=True)
class ContainerPlan:
    """One container of the Pod spec and how it behaves when healthy."""

    name: str
    image: str
    init: bool = False
    readiness: tuple[int, int] | None = None
    """(initialDelaySeconds, periodSeconds) of an HTTP readiness probe."""
    liveness: tuple[int, int] | None = None
    cpu: str = "100m"
    memory: str = "128Mi"
    gpu: int = 0
    host_port: int = 0
    env_from_configmap: str = ""
    run_s: float = 0.0
    """Run-to-completion containers (Jobs, init containers): seconds until exit 0."""


@dataclass(slots=True)
class PodPlan:
    """Everything needed to write a Pod's create request, and what its scenario tweaks."""

    workload: str
    namespace: str
    creator: Identity
    owner_kind: str = ""
    owner_name: str = ""
    owner_uid: str = ""
    generate_name: str = ""
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    containers: list[ContainerPlan] = field(default_factory=list)
    init_containers: list[ContainerPlan] = field(default_factory=list)
    restart_policy: str = "Always"
    readiness_gates: list[str] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    node_selector: dict[str, str] = field(default_factory=dict)
    pss_level: str = "privileged"

    @property
    def completes(self) -> bool:
        """Run-to-completion Pods (restartPolicy Never/OnFailure)."""
        return self.restart_policy != "Always"


def _probe(delay: int, period: int, path: str = "/healthz") -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": delay, "timeoutSeconds": 1, "periodSeconds": period,
            "successThreshold": 1, "failureThreshold": 3}


def container_spec(c: ContainerPlan) -> dict[str, Any]:
    """The container as it appears in the Pod spec (defaults filled in)."""
    requests: dict[str, Any] = {"cpu": c.cpu, "memory": c.memory}
    limits: dict[str, Any] = {"memory": c.memory}
    if c.gpu:
        requests["nvidia.com/gpu"] = str(c.gpu)
        limits["nvidia.com/gpu"] = str(c.gpu)
    spec: dict[str, Any] = {"name": c.name, "image": c.image}
    if not c.init and not c.run_s:
        port: dict[str, Any] = {"name": "http", "containerPort": 8080, "protocol": "TCP"}
        if c.host_port:
            port["hostPort"] = c.host_port
        spec["ports"] = [port]
    if c.env_from_configmap:
        spec["env"] = [{"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {
            "name": c.env_from_configmap, "key": "LOG_LEVEL"}}}]
    spec["resources"] = {"limits": limits, "requests": requests}
    if c.liveness:
        spec["livenessProbe"] = _probe(*c.liveness, path="/livez")
    if c.readiness:
        spec["readinessProbe"] = _probe(*c.readiness, path="/readyz")
    spec["terminationMessagePath"] = "/dev/termination-log"
    spec["terminationMessagePolicy"] = "File"
    spec["imagePullPolicy"] = "IfNotPresent"
    return spec


def make_plan(cluster: Cluster, rng: random.Random, workload: str) -> PodPlan:
    """A plausible Pod of the given workload kind, before any scenario tweaks."""
    if workload == "job":
        ns = rng.choice(JOB_NAMESPACES)
        job = f"{rng.choice(('report', 'etl', 'backup', 'train', 'migrate'))}-{cluster.name(5)}"
        plan = PodPlan(
            "job", ns, cluster.controllers["job-controller"], "Job", job, cluster.uuid(),
            generate_name=f"{job}-",
            restart_policy=rng.choice(("Never", "OnFailure")),
        )
        plan.labels = {"batch.kubernetes.io/controller-uid": plan.owner_uid,
                       "batch.kubernetes.io/job-name": job,
                       "controller-uid": plan.owner_uid, "job-name": job}
        plan.containers = [ContainerPlan("main", rng.choice(list(JOB_IMAGES)), cpu="500m",
                                         memory="512Mi", run_s=rng.uniform(5, 90))]
        return plan
    app = rng.choice(APPS)
    ns = rng.choice(NAMESPACES)
    image = rng.choice(list(IMAGES))
    main = ContainerPlan(app if workload != "statefulset" else "db", image,
                         cpu=rng.choice(("100m", "250m", "500m")),
                         memory=rng.choice(("128Mi", "256Mi", "512Mi")))
    if rng.random() < 0.6:
        main.readiness = (rng.choice((0, 2, 5)), rng.choice((2, 5, 10)))
    if rng.random() < 0.3:
        main.liveness = (15, 10)
    if workload == "deployment":
        rs = f"{app}-{cluster.name(10)}"
        plan = PodPlan("deployment", ns, cluster.controllers["replicaset-controller"],
                       "ReplicaSet", rs, cluster.uuid(), generate_name=f"{rs}-")
        plan.labels = {"app": app, "pod-template-hash": rs.rsplit("-", 1)[1]}
    elif workload == "statefulset":
        sts = f"{rng.choice(('db', 'kafka', 'etcd', 'redis'))}-{cluster.name(4)}"
        ordinal = 0
        while not cluster.claim(ns, f"{sts}-{ordinal}"):
            ordinal += 1
        plan = PodPlan("statefulset", ns, cluster.controllers["statefulset-controller"],
                       "StatefulSet", sts, cluster.uuid(), name=f"{sts}-{ordinal}")
        plan.labels = {"app": sts, "apps.kubernetes.io/pod-index": str(ordinal),
                       "controller-revision-hash": f"{sts}-{cluster.name(10)}",
                       "statefulset.kubernetes.io/pod-name": plan.name}
        plan.volumes.append({"name": "data", "persistentVolumeClaim": {
            "claimName": f"data-{plan.name}"}})
    else:
        creator = cluster.admin if rng.random() < 0.6 else cluster.ci
        name = f"{rng.choice(('debug', 'smoke', 'probe', 'tools', app))}-{cluster.name(5)}"
        cluster.claim(ns, name)
        plan = PodPlan("pod", ns, creator, name=name)
        plan.labels = {"run": name.rsplit("-", 1)[0]}
    plan.containers = [main]
    if workload == "deployment" and rng.random() < 0.25:
        plan.containers.append(ContainerPlan("envoy", next(iter(SIDECARS)), cpu="50m",
                                             memory="64Mi"))
    plan.pss_level = "baseline" if ns in ("payments", "shop") else "privileged"
    return plan


def pod_spec(plan: PodPlan, sa_volume: str) -> dict[str, Any]:
    """The Pod spec as stored (after defaulting and service-account admission)."""
    volumes: list[dict[str, Any]] = [*plan.volumes, {"name": sa_volume, "projected": {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ], "defaultMode": 420}}]
    mount = {"name": sa_volume, "readOnly": True,
             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    containers = []
    for c in plan.containers:
        spec = container_spec(c)
        mounts = [mount]
        for v in plan.volumes:
            mounts.insert(0, {"name": v["name"], "mountPath": f"/{v['name']}"})
        spec["volumeMounts"] = mounts
        containers.append(spec)
    spec_out: dict[str, Any] = {"volumes": volumes}
    if plan.init_containers:
        inits = []
        for c in plan.init_containers:
            spec = container_spec(c)
            spec["volumeMounts"] = [mount]
            inits.append(spec)
        spec_out["initContainers"] = inits
    spec_out["containers"] = containers
    spec_out["restartPolicy"] = plan.restart_policy
    spec_out["terminationGracePeriodSeconds"] = 30
    spec_out["dnsPolicy"] = "ClusterFirst"
    if plan.node_selector:
        spec_out["nodeSelector"] = plan.node_selector
    spec_out["serviceAccountName"] = "default"
    spec_out["serviceAccount"] = "default"
    spec_out["securityContext"] = {}
    spec_out["schedulerName"] = "default-scheduler"
    spec_out["tolerations"] = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
         "effect": "NoExecute", "tolerationSeconds": 300},
    ]
    spec_out["priority"] = 0
    spec_out["enableServiceLinks"] = True
    spec_out["preemptionPolicy"] = "PreemptLowerPriority"
    if plan.readiness_gates:
        spec_out["readinessGates"] = [{"conditionType": g} for g in plan.readiness_gates]
    return spec_out


def request_spec(plan: PodPlan) -> dict[str, Any]:
    """The Pod spec as the creator sent it (no service-account volume, no defaults)."""
    spec: dict[str, Any] = {}
    if plan.volumes:
        spec["volumes"] = plan.volumes
    if plan.init_containers:
        spec["initContainers"] = [container_spec(c) for c in plan.init_containers]
    spec["containers"] = [container_spec(c) for c in plan.containers]
    spec["restartPolicy"] = plan.restart_policy
    spec["terminationGracePeriodSeconds"] = 30
    spec["dnsPolicy"] = "ClusterFirst"
    if plan.node_selector:
        spec["nodeSelector"] = plan.node_selector
    spec["securityContext"] = {}
    spec["schedulerName"] = "default-scheduler"
    if plan.readiness_gates:
        spec["readinessGates"] = [{"conditionType": g} for g in plan.readiness_gates]
    return spec
